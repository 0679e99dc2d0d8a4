"""PointCLIP V2 and the accuracy toolkit on a model: prompt libraries, validation-tuned prompts and view weights that
persist, ensembles with a small 3D network trained here, and few-shot on the V2 projection."""

import json

import numpy as np
import pytest
import torch
from conftest import SHAPE_CLASSES, make_shape_dataset
from torch import nn

from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor
from pointclip_hf.cli import main
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.model.prompts import TEMPLATE_SETS, build_prompts, load_class_prompts
from pointclip_hf.training import TrainingConfig, build_few_shot_model, train_adapter
from pointclip_hf.tuning import ensemble_logits, pointclip_logits, search_ensemble_weight, tune_on_validation

LIBRARY = {
    name: [f"a depth map of a {name}.", f"a gray {name} 3D model.", f"the {name} seen from above.", f"{name}!"]
    for name in SHAPE_CLASSES
}


def cloud_array(dataset) -> np.ndarray:
    return np.stack(dataset.with_format("numpy")["points"]).astype(np.float32)


def small_processor(model, style):
    return PointCLIPProcessor(
        PointCLIPFeatureExtractor(projection_style=style, num_points=256, image_size=32),
        processor_for_model(model).tokenizer,
    )


@pytest.fixture(scope="module")
def validation_set():
    return make_shape_dataset(5, per_class=5)


def test_shipped_template_sets_are_well_formed():
    for style, templates in TEMPLATE_SETS.items():
        assert len(templates) >= 4 and all(t.count("{}") == 1 for t in templates), style
    sentences, owners = build_prompts(["flower_pot", "cup"], ["a {}."], {"cup": ["a mug.", "a cup."]})
    assert sentences == ["a flower pot.", "a mug.", "a cup."] and owners == [0, 1, 1]


def test_prompt_library_files(tmp_path):
    (tmp_path / "prompts.json").write_text(json.dumps(LIBRARY))
    assert load_class_prompts(tmp_path / "prompts.json") == LIBRARY
    assert load_class_prompts(tmp_path) == LIBRARY  # a folder holding prompts.json
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_class_prompts(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text(json.dumps({"cube": "one sentence, not a list"}))
    with pytest.raises(ValueError, match="non-empty list"):
        load_class_prompts(tmp_path / "wrong.json")


def test_tuned_prompts_and_view_weights_persist(tiny_clip_dir, tmp_path, validation_set):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, projection_style="pointclip_v2", label_names=SHAPE_CLASSES)
    model.processor = small_processor(model, "pointclip_v2")
    summary = tune_on_validation(
        model,
        validation_set,
        prompt_library=LIBRARY,
        grid=(0.5, 1.0),
        fixed={0: 0.75, 1: 0.75, 2: 0.75},
        progress=False,
    )
    assert summary["view_weights"]["num_candidates"] == 2**7
    assert summary["view_weights"]["accuracy"] >= summary["view_weights"]["baseline_accuracy"]
    assert summary["prompts"]["accuracy"] >= summary["prompts"]["baseline_accuracy"]
    assert model.config.view_weights[:3] == [0.75, 0.75, 0.75] and len(model.config.view_weights) == 10
    assert all(model.config.class_prompts[c][0] in LIBRARY[c] for c in SHAPE_CLASSES)
    logits, labels = pointclip_logits(model, validation_set, progress=False)
    accuracy = float((logits.argmax(-1) == labels).float().mean())
    assert accuracy == pytest.approx(summary["view_weights"]["accuracy"], abs=1e-6)

    model.save_pretrained(tmp_path)
    processor_for_model(model).save_pretrained(tmp_path)
    reloaded = PointCLIPModel.from_pretrained(tmp_path)
    assert reloaded.config.view_weights == model.config.view_weights
    assert reloaded.config.class_prompts == model.config.class_prompts
    torch.testing.assert_close(pointclip_logits(reloaded, validation_set, progress=False)[0], logits)


def test_cli_search_tunes_on_a_carved_validation_split(tiny_clip_dir, tmp_path, capsys):
    data = tmp_path / "shapes"
    for name, clouds in zip(SHAPE_CLASSES, np.split(cloud_array(make_shape_dataset(6, 5)), 4)):
        (data / name).mkdir(parents=True)
        for i, cloud in enumerate(clouds):
            np.save(data / name / f"{i}.npy", cloud)
    (tmp_path / "library.json").write_text(json.dumps(LIBRARY))
    out = tmp_path / "tuned"
    assert (
        main(
            [
                "search",
                "--dataset",
                str(data),
                "--prompts",
                str(tmp_path / "library.json"),
                "--grid",
                "0.5,1",
                "--model",
                str(tiny_clip_dir),
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "prompts: validation accuracy" in printed and "view_weights: validation accuracy" in printed
    summary = json.loads((out / "search.json").read_text())
    assert summary["validation_size"] == 4 and len(summary["view_weights"]["weights"]) == 6
    assert PointCLIPModel.from_pretrained(out).config.view_weights == summary["view_weights"]["weights"]
    (tmp_path / "partial.json").write_text(json.dumps({"cube": ["a cube."]}))
    assert (
        main(
            [
                "search",
                "--dataset",
                str(data),
                "--prompts",
                str(tmp_path / "partial.json"),
                "--model",
                str(tiny_clip_dir),
                "--output-dir",
                str(out),
            ]
        )
        == 2
    )
    assert "no sentences for classes" in capsys.readouterr().err


class TinyPointNet(nn.Module):
    """A shared per-point MLP and a max-pool: the smallest real 3D classifier."""

    def __init__(self, classes: int):
        super().__init__()
        self.point_mlp = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 64), nn.ReLU())
        self.head = nn.Linear(64, classes)

    def forward(self, points):
        return self.head(self.point_mlp(points).amax(dim=1))


def train_pointnet(dataset, epochs=60) -> TinyPointNet:
    torch.manual_seed(0)
    network = TinyPointNet(len(SHAPE_CLASSES))
    points = torch.from_numpy(cloud_array(dataset))
    labels = torch.tensor(dataset["label"])
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(network(points), labels).backward()
        optimizer.step()
    return network.eval()


def test_ensemble_with_a_3d_network_trained_here(zero_shot_model, tmp_path, capsys, tiny_clip_dir):
    train, validation, test = (make_shape_dataset(seed, n) for seed, n in ((7, 8), (8, 5), (9, 5)))
    network = train_pointnet(train, epochs=3)  # deliberately under-trained: both sources are imperfect
    with torch.no_grad():
        other = {
            name: network(torch.from_numpy(cloud_array(split)))
            for name, split in (("validation", validation), ("test", test))
        }
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, label_names=SHAPE_CLASSES)
    model.processor = small_processor(model, "pointclip_v1")
    ours, labels = pointclip_logits(model, validation, progress=False)
    found = search_ensemble_weight(ours, other["validation"], labels)
    assert found.accuracy >= max(found.pointclip_accuracy, found.other_accuracy)
    assert found.pointclip_accuracy == pytest.approx(float((ours.argmax(-1) == labels).float().mean()))
    mixed = ensemble_logits(ours, other["validation"], found.alpha)
    assert float((mixed.argmax(-1) == labels).float().mean()) == pytest.approx(found.accuracy)
    with pytest.raises(ValueError, match="classes"):
        search_ensemble_weight(ours, other["validation"][:, :3], labels)

    np.save(tmp_path / "validation.npy", other["validation"].numpy())
    data = tmp_path / "shapes"
    for split, dataset in (("validation", validation), ("test", test)):
        for index, (cloud, label) in enumerate(zip(dataset["points"], dataset["label"])):
            (data / split / SHAPE_CLASSES[label]).mkdir(parents=True, exist_ok=True)
            np.save(data / split / SHAPE_CLASSES[label] / f"{index:02d}.npy", np.asarray(cloud))
    np.save(tmp_path / "test.npy", other["test"].numpy()[np.argsort(test["label"], kind="stable")])
    assert (
        main(
            [
                "ensemble",
                "--dataset",
                str(data),
                "--validation-split",
                "validation",
                "--validation-logits",
                str(tmp_path / "validation.npy"),
                "--test-split",
                "test",
                "--test-logits",
                str(tmp_path / "test.npy"),
                "--model",
                str(tiny_clip_dir),
                "--output-dir",
                str(tmp_path / "ens"),
            ]
        )
        == 0
    )
    assert "test accuracy" in capsys.readouterr().out
    summary = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert 0 <= summary["alpha"] <= 1 and set(summary["test"]) == {"ensemble", "pointclip"}


def test_few_shot_adapter_on_the_v2_projection(tiny_clip_dir, tmp_path, validation_set, example_clouds):
    model = build_few_shot_model(tiny_clip_dir, SHAPE_CLASSES, projection_style="pointclip_v2", seed=0)
    model.processor = small_processor(model, "pointclip_v2")
    assert model.config.num_views == 10 and model.adapter.num_views == 10
    result = train_adapter(
        model,
        make_shape_dataset(4, 4),
        validation_set,
        config=TrainingConfig(epochs=4, batch_size=8, augment=False, progress=False),
    )
    assert result.best_validation_accuracy is not None
    model.save_pretrained(tmp_path)
    processor_for_model(model).save_pretrained(tmp_path)
    reloaded = PointCLIPModel.from_pretrained(tmp_path)
    assert reloaded.config.projection_style == "pointclip_v2" and reloaded.adapter is not None
    assert reloaded.classify(example_clouds[0], SHAPE_CLASSES) == model.classify(example_clouds[0], SHAPE_CLASSES)
