"""The ONNX Runtime image tower: parity with torch float32 on the tiny CLIP, the on-disk cache, batch invariance."""

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from pointclip_hf import PointCLIPModel
from pointclip_hf import onnx_image_tower as onnx_tower
from pointclip_hf.model.processing_pointclip import processor_for_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

LABELS = ["cube", "chair", "cone"]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def models(tiny_clip_dir, onnx_cache):
    reference = PointCLIPModel.from_pretrained(tiny_clip_dir).eval()
    onnx_model = onnx_tower.use_onnx_image_tower(PointCLIPModel.from_pretrained(tiny_clip_dir).eval(), onnx_cache)
    return reference, onnx_model


@pytest.fixture(scope="module")
def pixel_values(models, example_clouds):
    processor = processor_for_model(models[0])
    return processor(point_clouds=list(example_clouds) + [example_clouds[0][::-1].copy()])["pixel_values"]


def test_features_match_torch_float32(models, pixel_values):
    reference, onnx_model = models
    with torch.no_grad():
        expected = reference.get_view_features(pixel_values)
        actual = onnx_model.get_view_features(pixel_values)
    relative = (actual - expected).norm() / expected.norm()
    assert relative.item() <= 1e-5
    assert isinstance(onnx_model.clip.vision_model, onnx_tower.OnnxImageTower)


def test_logits_and_predictions_match(models, example_clouds):
    reference, onnx_model = models
    expected = reference.classify(list(example_clouds), LABELS)
    actual = onnx_model.classify(list(example_clouds), LABELS)
    assert [[p["label"] for p in r] for r in actual] == [[p["label"] for p in r] for r in expected]
    for got, want in zip(actual, expected):
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in want], abs=1e-5)


def test_a_cloud_does_not_depend_on_its_batch(models, pixel_values):
    _, onnx_model = models
    with torch.no_grad():
        batched = onnx_model.get_view_features(pixel_values)
        alone = torch.cat([onnx_model.get_view_features(pixel_values[i : i + 1]) for i in range(len(pixel_values))])
    assert torch.equal(batched, alone)


def test_state_dict_keys_are_unchanged(models):
    reference, onnx_model = models
    assert list(onnx_model.state_dict()) == list(reference.state_dict())


def test_export_is_cached_and_keyed_by_weights(models, tiny_clip_dir, onnx_cache, monkeypatch):
    reference, onnx_model = models
    monkeypatch.setattr(onnx_tower, "_export", lambda *args: pytest.fail("exported again despite the cache"))
    with monkeypatch.context() as patched:  # a checkpoint loaded from disk is keyed by its files, not its bytes
        patched.setattr(onnx_tower, "tensors_sha256", lambda *args: pytest.fail("hashed every weight"))
        again = onnx_tower.use_onnx_image_tower(PointCLIPModel.from_pretrained(tiny_clip_dir).eval(), onnx_cache)
    assert again.clip.vision_model.onnx_path == onnx_model.clip.vision_model.onnx_path

    tower = reference.clip.vision_model
    shape = onnx_model.clip.vision_model.input_shape
    key = onnx_tower.image_tower_key(tower, shape, "1")
    with torch.no_grad():
        tower.post_layernorm.bias.add_(1e-3)
    try:
        assert onnx_tower.image_tower_key(tower, shape, "1") != key
    finally:
        with torch.no_grad():
            tower.post_layernorm.bias.sub_(1e-3)
    assert onnx_tower.image_tower_key(tower, (shape[0] * 2, *shape[1:]), "1") != key


def test_wrong_shape_and_dtype_are_refused(models, tiny_clip_dir, onnx_cache):
    tower = models[1].clip.vision_model
    with pytest.raises(ValueError, match="exported for pixel_values of shape"):
        tower(torch.zeros(1, *tower.input_shape[1:]))
    with pytest.raises(TypeError, match="float32"):
        tower(torch.zeros(tower.input_shape, dtype=torch.float64))
    half = PointCLIPModel.from_pretrained(tiny_clip_dir, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="runs the image tower in float32"):
        onnx_tower.use_onnx_image_tower(half, onnx_cache)


def test_missing_extra_is_named(monkeypatch, zero_shot_model):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install 'pointclip_hf\[onnx\]'"):
        onnx_tower.use_onnx_image_tower(zero_shot_model)


def test_checkpoint_identity_names_the_files_and_drops_changed_weights(tiny_clip_dir, tmp_path):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    identity = onnx_tower.checkpoint_identity(model)
    assert [Path(path).name for path, _, _ in identity["files"]] == ["model.safetensors"]
    copy = tmp_path / "copy"
    shutil.copytree(tiny_clip_dir, copy)
    os.utime(copy / "model.safetensors", ns=(1, 1))
    assert onnx_tower.checkpoint_identity(PointCLIPModel.from_pretrained(copy)) != identity
    with torch.no_grad():
        model.clip.vision_model.post_layernorm.bias.add_(1e-3)  # changed in place after loading
    assert onnx_tower.checkpoint_identity(model) is None
    cast = PointCLIPModel.from_pretrained(tiny_clip_dir, dtype=torch.bfloat16).float()  # not the file's float32
    assert onnx_tower.checkpoint_identity(cast) is None
    assert onnx_tower.checkpoint_identity(PointCLIPModel(model.config)) is None  # built in memory


def test_weights_changed_after_export_are_never_served_stale(tiny_clip_dir, onnx_cache, pixel_values):
    model = onnx_tower.use_onnx_image_tower(PointCLIPModel.from_pretrained(tiny_clip_dir).eval(), onnx_cache)
    exported = model.clip.vision_model.onnx_path
    with torch.no_grad():
        model.clip.vision_model.post_layernorm.bias.add_(1e-2)
        with pytest.raises(RuntimeError, match="weights changed after use_onnx_image_tower"):
            model.get_view_features(pixel_values[:1])
        onnx_tower.use_onnx_image_tower(model, onnx_cache)
        assert model.clip.vision_model.onnx_path != exported
        reference = PointCLIPModel.from_pretrained(tiny_clip_dir).eval()
        reference.clip.vision_model.post_layernorm.bias.add_(1e-2)
        expected = reference.get_view_features(pixel_values[:1])
        torch.testing.assert_close(model.get_view_features(pixel_values[:1]), expected, rtol=1e-5, atol=1e-5)
