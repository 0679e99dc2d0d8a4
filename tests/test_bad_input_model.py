"""Bad models end in one line, never in NaN or uniform scores (issues 17 and 18): extreme but finite weights
(`logit_scale`, adapter, view weights), sizes a folder declares, a missing or uncached base CLIP, a network failure,
and a whole model saved with its processor."""

import json
import re
import shutil
from pathlib import Path

import httpx2
import numpy as np
import pytest
import torch
from conftest import build_tiny_clip, build_tiny_tokenizer, make_shape_dataset
from hub_server import hub_offline
from huggingface_hub.errors import OfflineModeIsEnabled
from safetensors.torch import load_file, save_file

from pointclip_hf import PointCLIPModel, evaluate
from pointclip_hf.cli import main
from pointclip_hf.training import build_few_shot_model

CLOUD = np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32)
LABELS = ["cube", "sphere", "disc"]
MUG = str(Path(__file__).parent.parent / "examples" / "mug.npy")


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main([str(arg) for arg in argv])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pointclip")]
    assert len(lines) == 1, lines
    return code, lines[0]


def with_tensor(source: Path, target: Path, key: str, value: float) -> Path:
    """A copy of the checkpoint folder `source` whose tensor `key` is filled with `value`."""
    shutil.copytree(source, target)
    tensors = load_file(target / "model.safetensors")
    tensors[key] = torch.full_like(tensors[key], value)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def edit_json(path: Path, **fields) -> None:
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------------------------------
# N2: exp(logit_scale) in the compute dtype
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "logit_scale, dtype, match",
    [(89.0, torch.float32, "overflows float32"), (11.2, torch.float16, "overflows float16"), (-100.0, None, "shrinks")],
)
def test_a_logit_scale_that_breaks_the_scores_is_refused_at_load(tiny_clip_dir, tmp_path, logit_scale, dtype, match):
    folder = with_tensor(tiny_clip_dir, tmp_path / "clip", "logit_scale", logit_scale)
    with pytest.raises(ValueError, match=match) as error:
        PointCLIPModel.from_pretrained(folder, dtype=dtype)
    assert "logit_scale = " in one_line(error) and str(folder) in str(error.value)


def test_a_logit_scale_fine_in_float32_is_refused_once_the_model_runs_in_float16(tiny_clip_dir, tmp_path):
    folder = with_tensor(tiny_clip_dir, tmp_path / "clip", "logit_scale", 11.2)
    model = PointCLIPModel.from_pretrained(folder)
    assert len(model.classify(CLOUD, LABELS)) == 3
    model.half()
    with pytest.raises(ValueError, match="overflows float16"):
        model.classify(CLOUD, LABELS)


@pytest.mark.parametrize("logit_scale, argv", [(89.0, []), (11.2, ["--dtype", "float16"])])
def test_the_command_line_refuses_a_breaking_logit_scale(tiny_clip_dir, tmp_path, capsys, logit_scale, argv):
    folder = with_tensor(tiny_clip_dir, tmp_path / "clip", "logit_scale", logit_scale)
    code, line = run_cli(["classify", MUG, "--labels", ",".join(LABELS), "--model", folder, *argv], capsys)
    assert code == 2 and "logit_scale" in line and "overflows" in line


def test_evaluate_refuses_a_model_whose_scores_cannot_differ(tiny_clip_dir):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        model.clip.logit_scale.fill_(-100.0)
    with pytest.raises(ValueError, match="shrinks"):
        evaluate(model, make_shape_dataset(0, per_class=1, num_points=64), progress=False)


# --------------------------------------------------------------------------------------------------
# N11: finite extremes in the adapter and the view weights
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapter_dir(tiny_clip_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("adapter")
    build_few_shot_model(tiny_clip_dir, LABELS, seed=0).save_pretrained(path)
    return path


@pytest.mark.parametrize("key, value", [("adapter.global_proj.weight", 3e38), ("adapter.view_fusion_weights", 1e38)])
def test_adapter_weights_that_overflow_are_named(adapter_dir, tmp_path, key, value):
    folder = with_tensor(adapter_dir, tmp_path / "adapter", key, value)
    expected = f"{key} (in the weights of {folder}) holds values up to {value:.3g}"
    with pytest.raises(ValueError, match=re.escape(expected)) as error:
        PointCLIPModel.from_pretrained(folder)
    one_line(error)


def test_tiny_view_weights_are_refused_in_config_json_and_in_set_view_weights(tiny_clip_dir, tmp_path):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    with pytest.raises(ValueError, match="view_weights are all zero or below 0.001") as error:
        model.set_view_weights([1e-30] * 6)
    one_line(error)
    assert model.config.view_weights is None
    model.save_pretrained(tmp_path / "model")
    edit_json(tmp_path / "model" / "config.json", view_weights=[1e-30] * 6)
    with pytest.raises(ValueError, match="config.json .*view_weights") as error:
        PointCLIPModel.from_pretrained(tmp_path / "model")
    one_line(error)


def test_scores_that_overflow_in_the_image_tower_are_an_error(tiny_clip_dir, monkeypatch):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    monkeypatch.setattr(model, "_encode_images", lambda images: torch.full((len(images), 16), float("inf")))
    with pytest.raises(ValueError, match="scores of a point cloud are NaN or infinite") as error:
        model.classify(CLOUD, LABELS)
    one_line(error)


# --------------------------------------------------------------------------------------------------
# N6: caps on the sizes a folder declares
# --------------------------------------------------------------------------------------------------
def test_max_images_per_batch_is_capped(tiny_clip_dir, tmp_path, capsys):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    model.save_pretrained(tmp_path / "model")
    edit_json(tmp_path / "model" / "config.json", max_images_per_batch=100000)
    with pytest.raises(ValueError, match="config.json .*max_images_per_batch must be at least 1 and at most 1024"):
        PointCLIPModel.from_pretrained(tmp_path / "model")
    code, line = run_cli(["classify", MUG, "--labels", "a,b", "--model", tiny_clip_dir, "--max-images-per-batch",
                          "100000"], capsys)  # fmt: skip
    assert code == 2 and "max_images_per_batch" in line


@pytest.mark.parametrize("field, value", [("num_points", 10_000_000), ("image_size", 1_000_000)])
def test_processor_sizes_are_capped(tiny_clip_dir, tmp_path, field, value):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    model.save_pretrained(tmp_path / "model")
    model.processor.save_pretrained(tmp_path / "model")
    processor_config = tmp_path / "model" / "processor_config.json"
    data = json.loads(processor_config.read_text())
    data["feature_extractor"][field] = value
    processor_config.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"processor_config.json.*{field} must be positive and at most") as error:
        PointCLIPModel.from_pretrained(tmp_path / "model").classify(CLOUD, LABELS)
    one_line(error)


# --------------------------------------------------------------------------------------------------
# the base CLIP: missing, not cached while offline, or unreachable
# --------------------------------------------------------------------------------------------------
def pointing_at(tiny_clip_dir, folder: Path, base: str, revision: str | None = None) -> Path:
    PointCLIPModel.from_pretrained(tiny_clip_dir).save_pretrained(folder)
    edit_json(folder / "config.json", clip_model_name_or_path=base, clip_revision=revision)
    return folder


def test_a_missing_base_clip_folder_is_named(tiny_clip_dir, tmp_path, capsys):
    folder = pointing_at(tiny_clip_dir, tmp_path / "model", str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match="No such base CLIP folder") as error:
        PointCLIPModel.from_pretrained(folder)
    assert "Repo id" not in one_line(error) and str(tmp_path / "gone") in str(error.value)
    code, line = run_cli(["classify", MUG, "--labels", "a,b", "--model", folder], capsys)
    assert code == 2 and "No such base CLIP folder" in line


def test_an_uncached_base_clip_offline_names_it_its_commit_and_offline_mode(tiny_clip_dir, tmp_path, capsys):
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = pointing_at(tiny_clip_dir, tmp_path / "model", "someone/not-cached-clip", commit)
    with pytest.raises(OfflineModeIsEnabled) as error:
        PointCLIPModel.from_pretrained(folder)
    message = one_line(error)
    assert "someone/not-cached-clip" in message and commit in message and "offline mode is on" in message
    assert "use_safetensors" not in message
    code, line = run_cli(["classify", MUG, "--labels", "a,b", "--model", folder], capsys)
    assert code == 1 and "offline mode is on" in line


def test_a_network_failure_exits_1(monkeypatch, capsys):
    def refuse_connection(*args, **kwargs):
        raise httpx2.ConnectError("[Errno 111] Connection refused")

    monkeypatch.setattr("huggingface_hub.file_download.get_hf_file_metadata", refuse_connection)
    with hub_offline(False):
        code, line = run_cli(["classify", MUG, "--labels", "a,b", "--model", "someone/unreachable"], capsys)
    assert code == 1 and "connect" in line


# --------------------------------------------------------------------------------------------------
# a whole model (clip_model_name_or_path=None) is saved with its processor
# --------------------------------------------------------------------------------------------------
def test_a_whole_model_reloads_and_classifies_on_its_own(tmp_path):
    clip_dir = tmp_path / "clip"
    build_tiny_clip(seed=3).save_pretrained(clip_dir)
    build_tiny_tokenizer().save_pretrained(clip_dir)
    model = PointCLIPModel.from_pretrained(clip_dir)
    model.config.clip_model_name_or_path = None
    model.save_pretrained(tmp_path / "whole")
    shutil.rmtree(clip_dir)  # nothing outside the saved folder remains
    reloaded = PointCLIPModel.from_pretrained(tmp_path / "whole")
    assert reloaded.classify(CLOUD, LABELS) == model.classify(CLOUD, LABELS)
