"""The cache head (Tip-Adapter): its formula and alpha/beta search against the official code's outputs, the build from
support clouds (validation-only search, 1-shot with 40 classes, a class without support), save / reload / the Hub,
Tip-Adapter-F through `train_adapter` and `transformers.Trainer`, and the cache next to the adapter and the ensemble."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHAPE_CLASSES, hub_environment, make_shape_dataset, synthetic_cloud
from datasets import Dataset
from huggingface_hub import HfApi, ModelCard, constants
from safetensors.torch import load_file

import pointclip_hf.cache_building as cache_building
from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor
from pointclip_hf.cli import main
from pointclip_hf.data import MODELNET40_CLASSES, point_features
from pointclip_hf.model.inter_view_adapter import CacheModel, affinity_logits, fused_features
from pointclip_hf.model.pipeline_pointclip import PIPELINE_TASK, label_embeddings
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.testing_utils import run_without_the_package
from pointclip_hf.training import TrainingConfig, build_few_shot_model, train_adapter
from pointclip_hf.tuning import pointclip_logits, search_ensemble_weight
from pointclip_hf.tuning.cache_search import search_cache_weights

FIXTURES = Path(__file__).parents[1] / "fixtures"
GOLDEN = json.loads((FIXTURES / "cache_golden.json").read_text())
BASE = "openai-tiny/clip"
REPO = "user/pointclip-cache"


@pytest.fixture(scope="module")
def tip():
    return {key: torch.from_numpy(value) for key, value in np.load(FIXTURES / "tip_adapter_golden.npz").items()}


def small_processor(model, projection: str = "pointclip_v1") -> PointCLIPProcessor:
    return PointCLIPProcessor(
        PointCLIPFeatureExtractor(projection, num_points=128, image_size=32), model.processor.tokenizer
    )


def zero_shot_model(clip_dir, projection: str = "pointclip_v1") -> PointCLIPModel:
    model = PointCLIPModel.from_pretrained(clip_dir, projection_style=projection)
    model.processor = small_processor(model, projection)
    return model


@pytest.fixture(scope="module")
def cache_model(tiny_clip_dir):
    model = zero_shot_model(tiny_clip_dir)
    model.build_cache(make_shape_dataset(0, 5, 128), shots=4, validation=make_shape_dataset(1, 3, 128), progress=False)
    return model


@pytest.fixture(scope="module")
def test_clouds():
    return list(make_shape_dataset(5, 2, 128).with_format("numpy")["points"])


def scores(predictions) -> dict:
    return {p["label"]: round(p["score"], 6) for p in predictions}


# ------------------------------------------------------------------------------------------ against Tip-Adapter


def test_cache_logits_equal_tip_adapter(tip):
    """Tip-Adapter's `run_tip_adapter` on the same features: its logits at the first and the searched (alpha, beta)."""
    values = F.one_hot(tip["support_labels"]).double()
    meta = GOLDEN["tip_adapter"]
    for features, clip_logits, alpha, beta, expected in (
        (tip["val"], tip["val_clip_logits"], meta["init_alpha"], meta["init_beta"], tip["val_tip_logits_init"]),
        (tip["test"], tip["test_clip_logits"], meta["best_alpha"], meta["best_beta"], tip["test_tip_logits"]),
        (tip["test"], tip["test_clip_logits"], meta["best_alpha_f"], meta["best_beta_f"], tip["test_tip_f_logits"]),
    ):
        keys = tip["trained_keys"] if expected is tip["test_tip_f_logits"] else tip["support"]
        ours = clip_logits + alpha * affinity_logits(features, keys, values, beta)
        assert (ours - expected).abs().max() < 1e-6
    head = CacheModel(len(values), tip["support"].shape[1], values.shape[1]).double()
    head.set_entries(tip["support"], tip["support_labels"])
    ours = tip["test_clip_logits"] + meta["best_alpha"] * head(tip["test"], meta["best_beta"])
    assert (ours - tip["test_tip_logits"]).abs().max() < 1e-6
    in_float32 = tip["test_clip_logits"].float() + meta["best_alpha"] * head.float()(tip["test"], meta["best_beta"])
    assert (in_float32 - tip["test_tip_logits"]).abs().max() < 1e-5  # the model's dtype


def test_search_equals_tip_adapter(tip):
    """Tip-Adapter's `search_hp` on the validation features: the same (beta, alpha), and all 4000 accuracies."""
    values = F.one_hot(tip["support_labels"]).double()
    meta = GOLDEN["tip_adapter"]
    for keys, beta, alpha in ((tip["support"], meta["best_beta"], meta["best_alpha"]),
                              (tip["trained_keys"], meta["best_beta_f"], meta["best_alpha_f"])):  # fmt: skip
        found = search_cache_weights(tip["val_clip_logits"], tip["val"] @ keys.T, values, tip["val_labels"])
        assert (found.beta, found.alpha) == (beta, alpha)
    found = search_cache_weights(tip["val_clip_logits"], tip["val"] @ tip["support"].T, values, tip["val_labels"])
    assert (100 * found.accuracies.flatten() - tip["search_accuracies"]).abs().max() < 1e-9


# ------------------------------------------------------------------------------------------ the head in the model


def test_forward_adds_the_cache_per_cloud(cache_model):
    torch.manual_seed(0)
    features = torch.randn(5, cache_model.config.num_views, cache_model.config.embed_dim)
    with torch.inference_mode():
        logits = cache_model(view_features=features).logits
        cache, cache_model.cache = cache_model.cache, None
        try:
            plain = cache_model(view_features=features)
        finally:
            cache_model.cache = cache
        fused = fused_features(plain.point_cloud_embeds)
        added = affinity_logits(fused, cache.keys, cache.values, cache_model.config.cache_beta)
        torch.testing.assert_close(logits, plain.logits + cache_model.config.cache_alpha * added)
        for position in range(5):  # a cloud's logits never depend on the rest of the batch
            assert torch.equal(cache_model(view_features=features[position : position + 1]).logits[0], logits[position])
    assert cache_model.cache.values.sum(0).tolist() == [4.0] * 4


def test_build_records_how_and_labels_in_any_order(cache_model, test_clouds):
    config = cache_model.config
    assert config.use_cache_head and config.cache_size == 16 and config.label_names == SHAPE_CLASSES
    info = config.cache_info
    assert info["shots"] == 4 and info["seed"] == 0 and info["validation"] == {"source": "given", "size": 12}
    assert info["search"]["num_candidates"] == 4000 and config.cache_alpha == info["search"]["alpha"]
    expected = scores(cache_model.classify(test_clouds[0]))
    assert scores(cache_model.classify(test_clouds[0], list(reversed(SHAPE_CLASSES)))) == expected
    with pytest.raises(ValueError, match="trained on the labels"):
        cache_model.classify(test_clouds[0], ["cube", "sphere"])


def test_search_reads_only_the_validation_split(tiny_clip_dir, monkeypatch):
    """The labels the search sees are exactly the validation labels: never support, never test."""
    seen = []
    original = cache_building.search_cache_weights
    monkeypatch.setattr(cache_building, "search_cache_weights",
                        lambda *args, **kwargs: seen.append(args[3].clone()) or original(*args, **kwargs))  # fmt: skip
    validation = make_shape_dataset(1, 3, 128)
    zero_shot_model(tiny_clip_dir).build_cache(make_shape_dataset(0, 2, 128), shots=2, validation=validation,
                                               progress=False)  # fmt: skip
    assert len(seen) == 1 and seen[0].tolist() == validation["label"]


def test_cli_never_reads_the_test_split(tiny_clip_dir, tmp_path):
    """A class-folder tree whose test files cannot be read: building (and searching) only reads train."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(SHAPE_CLASSES):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for index in range(4 if split == "train" else 1):
                if split == "train":
                    np.save(folder / f"{index}.npy", synthetic_cloud(label, rng, 128))
                else:
                    (folder / f"{index}.npy").write_bytes(b"not a cloud: reading the test split fails")
    output = tmp_path / "model"
    code = main(["cache", "build", "--dataset", str(tmp_path / "data"), "--model", str(tiny_clip_dir), "--shots", "2",
                 "--validation-fraction", "0.5", "--seed", "1", "--output-dir", str(output), "-q"])  # fmt: skip
    assert code == 0
    reloaded = PointCLIPModel.from_pretrained(output)
    assert reloaded.config.cache_size == 8 and reloaded.config.cache_info["validation"]["size"] == 8
    assert "carved from the 'train' split" in reloaded.config.cache_info["validation"]["source"]
    card = (output / "README.md").read_text()
    assert "## Cache" in card and "never the test split" in card and "tip-adapter" in card


def test_one_shot_with_forty_classes(tiny_clip_dir, tmp_path):
    rng = np.random.default_rng(0)
    clouds = [synthetic_cloud(index % 4, rng, 64) for index in range(80)]
    dataset = Dataset.from_dict({"points": clouds, "label": [index % 40 for index in range(80)]},
                                features=point_features(MODELNET40_CLASSES))  # fmt: skip
    model = zero_shot_model(tiny_clip_dir, "pointclip_v2")
    model.build_cache(dataset.select(range(40)), shots=1, validation=dataset.select(range(40, 80)), progress=False)
    assert model.config.cache_size == 40 and model.cache.values.shape == (40, 40)
    assert torch.equal(model.cache.values, torch.eye(40))
    model.save_pretrained(tmp_path)
    reloaded = PointCLIPModel.from_pretrained(tmp_path)
    features = torch.randn(3, model.config.num_views, model.config.embed_dim)
    with torch.inference_mode():
        assert torch.equal(reloaded(view_features=features).logits, model(view_features=features).logits)


def test_a_class_without_support_is_a_clear_error(tiny_clip_dir, tmp_path):
    dataset = make_shape_dataset(0, 3, 128)
    without_disc = dataset.filter(lambda row: row["label"] != SHAPE_CLASSES.index("disc"))
    model = zero_shot_model(tiny_clip_dir)
    with pytest.raises(ValueError, match=r"\['disc'\] have no support example"):
        model.build_cache(without_disc, shots=1, search=False, progress=False)
    paths = []
    for index, cloud in enumerate(make_shape_dataset(0, 1, 128).with_format("numpy")["points"]):
        paths.append(tmp_path / f"{index}.npy")
        np.save(paths[-1], cloud)
    trained = build_few_shot_model(tiny_clip_dir, SHAPE_CLASSES, seed=0)
    with pytest.raises(ValueError, match=r"\['line'\] have no support example"):
        trained.build_cache(paths[:3], ["cube", "sphere", "disc"], shots=1, search=False, progress=False)
    with pytest.raises(ValueError, match="shots=2 needs 2 support clouds per class"):
        model.build_cache(dataset, shots=2, search=True, validation_fraction=0.5, progress=False)
    assert model.cache is None and not model.config.use_cache_head  # nothing changed by a failed build


def test_files_with_labels_and_bad_saved_values(tiny_clip_dir, tmp_path, cache_model):
    paths = []
    for index, cloud in enumerate(make_shape_dataset(0, 2, 128).with_format("numpy")["points"]):
        paths.append(str(tmp_path / f"{index}.npy"))
        np.save(paths[-1], cloud)
    labels = [SHAPE_CLASSES[index // 2] for index in range(8)]
    model = zero_shot_model(tiny_clip_dir)
    info = model.build_cache(paths, labels, shots=None, alpha=2.0, beta=3.0, search=False, progress=False)
    assert info["shots"] == 2 and info["search"] is None and model.config.label_names == sorted(SHAPE_CLASSES)
    assert (model.config.cache_alpha, model.config.cache_beta) == (2.0, 3.0)
    cache_model.save_pretrained(tmp_path / "saved")
    weights = load_file(tmp_path / "saved" / "model.safetensors")
    assert set(weights) == {"cache.keys", "cache.values", "label_text_embeds"}
    weights["cache.values"] = weights["cache.values"] * 0.5
    from safetensors.torch import save_file

    save_file(weights, tmp_path / "saved" / "model.safetensors")
    with pytest.raises(ValueError, match="values are not one-hot rows"):
        PointCLIPModel.from_pretrained(tmp_path / "saved")


# ------------------------------------------------------------------------------------------ heads, training, ensemble


def test_adapter_and_cache_together(tiny_clip_dir, tmp_path, test_clouds):
    model = build_few_shot_model(tiny_clip_dir, SHAPE_CLASSES, seed=0)
    model.processor = small_processor(model, "pointclip_v1_fewshot")
    with torch.no_grad():
        for parameter in model.adapter.parameters():
            parameter.normal_(0, 0.1)
    model.build_cache(make_shape_dataset(0, 3, 128), shots=2, validation=make_shape_dataset(1, 1, 128), progress=False)
    assert set(model.trainable_heads()) == {"adapter", "cache"}
    model.save_pretrained(tmp_path)
    model.processor.save_pretrained(tmp_path)
    reloaded = PointCLIPModel.from_pretrained(tmp_path)
    assert reloaded.adapter is not None and reloaded.cache is not None
    assert scores(reloaded.classify(test_clouds[1])) == scores(model.classify(test_clouds[1]))


def test_tip_adapter_f_through_train_adapter(tiny_clip_dir):
    model = zero_shot_model(tiny_clip_dir)
    support = make_shape_dataset(0, 2, 128)
    model.build_cache(support, shots=2, alpha=1.0, beta=1.0, search=False, progress=False)
    keys, values = model.cache.keys.detach().clone(), model.cache.values.clone()
    config = TrainingConfig(epochs=2, batch_size=4, augment=False, progress=False, learning_rate=0.1)
    result = train_adapter(model, support, make_shape_dataset(1, 1, 128), config=config)
    assert result.finished and not torch.equal(model.cache.keys, keys) and torch.equal(model.cache.values, values)
    found = cache_building.search_cache_on_validation(model, make_shape_dataset(1, 2, 128), progress=False)
    assert model.config.cache_alpha == found["alpha"] and model.config.cache_info["search"] == found


def test_a_diverging_fine_tuning_is_an_error(tiny_clip_dir):
    model = zero_shot_model(tiny_clip_dir)
    support = make_shape_dataset(0, 2, 128)
    model.build_cache(support, shots=2, alpha=1.0, beta=1e3, search=False, progress=False)
    with torch.no_grad():
        model.cache.keys.mul_(2)  # keys far from unit norm, as a runaway fine-tuning leaves them: exp overflows
    config = TrainingConfig(epochs=3, batch_size=4, augment=False, progress=False)
    with pytest.raises(FloatingPointError, match="the heads diverged"):
        train_adapter(model, support, config=config)


def test_tip_adapter_f_through_the_trainer(tiny_clip_dir, tmp_path):
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments

    model = zero_shot_model(tiny_clip_dir)
    shapes = make_shape_dataset(0, 2, 128)
    model.build_cache(shapes, shots=2, alpha=1.0, beta=1.0, search=False, progress=False)
    keys = model.cache.keys.detach().clone()
    pixel_values = model.processor.feature_extractor(list(shapes.with_format("numpy")["points"]))["pixel_values"]
    train = Dataset.from_dict({"pixel_values": pixel_values.numpy(), "labels": shapes["label"]}).with_format("torch")
    arguments = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, num_train_epochs=2,
                                  learning_rate=0.05, report_to=[], save_strategy="no", use_cpu=True, seed=0,
                                  disable_tqdm=True)  # fmt: skip
    Trainer(model=model, args=arguments, train_dataset=train).train()
    assert not torch.equal(model.cache.keys, keys)
    model.save_pretrained(tmp_path / "saved")
    reloaded = PointCLIPModel.from_pretrained(tmp_path / "saved")
    with torch.inference_mode():
        expected = model.eval()(pixel_values=pixel_values[:3]).logits
        assert torch.equal(reloaded(pixel_values=pixel_values[:3]).logits, expected)


def test_ensemble_with_a_3d_network_still_works(cache_model):
    dataset = make_shape_dataset(3, 2, 128)
    logits, labels = pointclip_logits(cache_model, dataset, progress=False)
    other = F.one_hot(labels, 4).float() * 5  # a perfect 3D network
    result = search_ensemble_weight(logits, other, labels)
    assert result.other_accuracy == 1.0 and result.accuracy == 1.0
    features = torch.randn(2, cache_model.config.num_views, cache_model.config.embed_dim)
    with torch.inference_mode():
        text = label_embeddings(cache_model, processor_for_model(cache_model), SHAPE_CLASSES)
        assert torch.equal(cache_model(view_features=features, text_embeds=text).logits,
                           cache_model(view_features=features).logits)  # fmt: skip


# ------------------------------------------------------------------------------------------ the Hub


HUB_ONLY_SCRIPT = """
import json, sys
import numpy as np
from transformers import pipeline
repo, cloud_path, task = sys.argv[1:4]
pipe = pipeline(task, model=repo, trust_remote_code=True)
print(json.dumps({"pipeline": pipe(np.load(cloud_path)), "module": type(pipe.model).__module__,
                  "use_cache_head": pipe.model.config.use_cache_head}))
"""


def test_push_and_load_back_from_the_hub(local_hub, tiny_clip_dir, tmp_path, monkeypatch, test_clouds):
    api = HfApi()
    api.create_repo(BASE)
    api.upload_folder(repo_id=BASE, folder_path=str(tiny_clip_dir))
    model = zero_shot_model(BASE)
    model.build_cache(make_shape_dataset(0, 3, 128), shots=2, seed=3, progress=False)
    model.push_to_hub(REPO, shots=2)
    weights = load_file(api.hf_hub_download(REPO, "model.safetensors"))
    assert set(weights) == {"cache.keys", "cache.values", "label_text_embeds"}
    config = json.loads(Path(api.hf_hub_download(REPO, "config.json")).read_text())
    assert config["clip_model_name_or_path"] == BASE and config["clip_revision"] == api.model_info(BASE).sha
    assert config["cache_info"]["seed"] == 3 and "inter_view_adapter.py" in api.list_repo_files(REPO)
    card = ModelCard.load(REPO)
    assert "tip-adapter" in card.data.tags and "**Seed:** 3" in card.text and "carved from the support set" in card.text

    expected = scores(model.classify(test_clouds[0]))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "fresh-cache"))
    assert scores(PointCLIPModel.from_pretrained(REPO).classify(test_clouds[0])) == expected
    np.save(tmp_path / "cloud.npy", test_clouds[0])
    remote = run_without_the_package(HUB_ONLY_SCRIPT, REPO, str(tmp_path / "cloud.npy"), PIPELINE_TASK,
                                     folder=tmp_path, environment=hub_environment())  # fmt: skip
    assert remote["module"].startswith("transformers_modules") and remote["use_cache_head"]
    assert scores(remote["pipeline"]) == expected
