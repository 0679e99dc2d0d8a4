"""Train on a tiny local dataset, push only the adapter to a local Hub server, and load it back by repo id: in a
fresh cache, through the pipeline, and offline from the cache. Logits must be identical."""

import json

import numpy as np
import pytest
import torch
from conftest import SHAPE_CLASSES, make_shape_dataset
from hub_server import hub_offline  # the local_hub fixture comes from conftest's pytest_plugins
from huggingface_hub import HfApi, ModelCard, constants
from safetensors.torch import load_file
from transformers import pipeline

import pointclip_hf
from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor
from pointclip_hf.cli import main
from pointclip_hf.model.pipeline_pointclip import label_embeddings
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.training import TrainingConfig, build_few_shot_model, train_adapter

BASE = "openai-tiny/clip"
REPO = "user/pointclip-shapes"


@pytest.fixture
def hub_with_base_clip(local_hub, tiny_clip_dir):
    api = HfApi()
    api.create_repo(BASE)
    api.upload_folder(repo_id=BASE, folder_path=str(tiny_clip_dir))
    return local_hub


def logits_of(model, clouds):
    processor = processor_for_model(model)
    pixel_values = processor.feature_extractor(clouds)["pixel_values"]
    with torch.inference_mode():
        return model(pixel_values=pixel_values, text_embeds=label_embeddings(model, processor, SHAPE_CLASSES)).logits


def test_train_push_and_load_back_by_repo_id(hub_with_base_clip, tmp_path, monkeypatch, example_clouds):
    model = build_few_shot_model(BASE, SHAPE_CLASSES, seed=0)  # the base CLIP comes from the (local) Hub
    model.processor = PointCLIPProcessor(
        PointCLIPFeatureExtractor(projection_style="pointclip_v1_fewshot", num_points=256, image_size=32),
        processor_for_model(model).tokenizer,
        model.config.prompt_templates,
    )
    config = TrainingConfig(epochs=3, batch_size=8, augment=False, progress=False)
    train_adapter(model, make_shape_dataset(0, 4), make_shape_dataset(1, 2), config=config)
    before = logits_of(model, example_clouds)

    model.push_to_hub(REPO, training=config.to_dict(), shots=4, dataset_name="synthetic-shapes")
    api = HfApi()
    files = set(api.list_repo_files(REPO))
    assert {"config.json", "model.safetensors", "processor_config.json", "README.md"} <= files
    weights = load_file(api.hf_hub_download(REPO, "model.safetensors"))
    assert set(weights) - {"label_text_embeds"} == {key for key in weights if key.startswith("adapter.")}
    assert len(weights) == 17 + 1 and weights["label_text_embeds"].shape == (len(SHAPE_CLASSES), 16)
    card = ModelCard.load(REPO)
    assert card.data.library_name == "pointclip_hf" and card.data.base_model == BASE
    assert "Model Card for Model ID" not in card.text and REPO in card.text

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "fresh-cache"))
    reloaded = PointCLIPModel.from_pretrained(REPO)
    assert processor_for_model(reloaded).feature_extractor.num_points == 256
    assert torch.equal(logits_of(reloaded, example_clouds), before)
    expected = reloaded.classify(example_clouds[0], SHAPE_CLASSES)
    pipe = pipeline(pointclip_hf.PIPELINE_TASK, model=REPO)
    assert [p["label"] for p in pipe(example_clouds[0])] == [p["label"] for p in expected]  # labels from the config

    served = len(hub_with_base_clip.requests)
    with hub_offline():
        offline = PointCLIPModel.from_pretrained(REPO)
        assert torch.equal(logits_of(offline, example_clouds), before)
    assert len(hub_with_base_clip.requests) == served, "offline loading must not reach the server"


def test_cli_train_push_and_classify(hub_with_base_clip, tmp_path, capsys):
    data = tmp_path / "shapes"
    points = np.stack(make_shape_dataset(2, 5).with_format("numpy")["points"]).astype(np.float32)
    for name, cloud_set in zip(SHAPE_CLASSES, np.split(points, 4)):
        (data / name).mkdir(parents=True)
        for i, cloud in enumerate(cloud_set):
            np.save(data / name / f"{i}.npy", cloud)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                str(data),
                "--shots",
                "3",
                "--validation-fraction",
                "0.4",
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--no-augment",
                "--model",
                BASE,
                "--output-dir",
                str(out),
                "--push-to-hub",
                "user/cli-shapes",
            ]
        )
        == 0
    )
    assert "best validation accuracy" in capsys.readouterr().out
    assert (out / "README.md").exists() and (out / "checkpoint" / "trainer_state.json").exists()
    assert main(["push", str(out), "user/cli-shapes-copy"]) == 0
    assert (
        main(
            [
                "classify",
                str(data / "disc" / "0.npy"),
                "--labels",
                ",".join(SHAPE_CLASSES),
                "--model",
                "user/cli-shapes-copy",
                "--json",
            ]
        )
        == 0
    )
    assert '"label"' in capsys.readouterr().out.split("pushed", 1)[-1]
    assert main(["classify", str(data / "disc" / "0.npy"), "--model", "user/cli-shapes", "--json"]) == 0
    assert {p["label"] for p in json.loads(capsys.readouterr().out)[0]["predictions"]} == set(SHAPE_CLASSES)
    assert main(["classify", str(data / "disc" / "0.npy"), "--labels", "a,b", "--model", "user/cli-shapes"]) == 2
    assert "trained on the labels" in capsys.readouterr().err


def test_prompt_library_from_a_hub_dataset_repo(local_hub, tmp_path):
    from pointclip_hf import load_class_prompts

    library = {"cube": ["a cube.", "a box."], "line": ["a thin line."]}
    (tmp_path / "prompts.json").write_text(json.dumps(library))
    api = HfApi()
    api.create_repo("user/shape-prompts", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=str(tmp_path / "prompts.json"),
        path_in_repo="prompts.json",
        repo_id="user/shape-prompts",
        repo_type="dataset",
    )
    assert load_class_prompts("user/shape-prompts", repo_type="dataset") == library
