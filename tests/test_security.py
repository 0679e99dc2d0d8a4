"""Loading never runs a model folder's code unless the caller passed `trust_remote_code=True` (never a `[y/N]` question
on standard input), and a sharded checkpoint's index never reaches files outside its folder (issue 17, section 3)."""

import builtins
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoProcessor, pipeline

from pointclip_hf import PointCLIPModel, PointCLIPProcessor
from pointclip_hf.model.pipeline_pointclip import PIPELINE_TASK
from pointclip_hf.training import build_few_shot_model

CLOUD = np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32)
LABELS = ["cube", "sphere"]
EVIL_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("the folder's code ran")
from transformers import CLIPTokenizer, FeatureExtractionMixin
class EvilTokenizer(CLIPTokenizer):
    pass
class EvilFeatureExtractor(FeatureExtractionMixin):
    pass
"""


@pytest.fixture(scope="module")
def saved_model_dir(tiny_clip_dir, tmp_path_factory):
    """A zero-shot PointCLIP folder with its processor (tokenizer included), its base CLIP in `tiny_clip_dir`."""
    path = tmp_path_factory.mktemp("saved-model")
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    model.save_pretrained(path)
    model.processor.save_pretrained(path)
    return path


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    change(data)
    path.write_text(json.dumps(data))


def tokenizer_auto_map(folder: Path, keep_class: bool = False) -> None:
    def change(data):
        data["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
        if not keep_class:
            data.pop("tokenizer_class")

    edit_json(folder / "tokenizer_config.json", change)


def feature_extractor_auto_map(data: dict) -> None:
    data["auto_map"] = {"AutoFeatureExtractor": "evil.EvilFeatureExtractor"}
    data.pop("feature_extractor_type", None)


def preprocessor_auto_map(folder: Path) -> None:
    edit_json(folder / "processor_config.json", lambda data: data.pop("feature_extractor"))
    edit_json(folder / "preprocessor_config.json", feature_extractor_auto_map)


EVIL_FOLDERS = {
    "tokenizer auto_map": tokenizer_auto_map,
    "tokenizer auto_map, no saved processor": lambda f: (tokenizer_auto_map(f), (f / "processor_config.json").unlink()),
    "tokenizer auto_map beside a known tokenizer_class": lambda f: tokenizer_auto_map(f, keep_class=True),
    "processor_config.json feature extractor auto_map": lambda f: edit_json(
        f / "processor_config.json", lambda data: feature_extractor_auto_map(data["feature_extractor"])
    ),
    "preprocessor_config.json auto_map": preprocessor_auto_map,
    "processor_config.json AutoProcessor auto_map": lambda f: edit_json(
        f / "processor_config.json", lambda data: data.update(auto_map={"AutoProcessor": "evil.EvilProcessor"})
    ),
}


def evil_copy(saved_model_dir: Path, tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A copy of the saved model whose configs point at `evil.py`, which writes the returned marker when imported."""
    folder, marker = tmp_path / "evil-model", tmp_path / "marker"
    shutil.copytree(saved_model_dir, folder)
    (folder / "evil.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    EVIL_FOLDERS[name](folder)
    return folder, marker


@pytest.fixture
def answers_yes(monkeypatch):
    """Answer `y` to any question asked on standard input, and record the questions."""
    questions = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": questions.append(prompt) or "y")
    return questions


def classify_or_refuse(load) -> str:
    """`"ok"` when the model classifies with the package's own classes, else the one-line refusal."""
    try:
        predictions = load()
    except ValueError as error:
        message = str(error)
        assert "\n" not in message and "trust_remote_code=True" in message, message
        return message
    assert sorted(p["label"] for p in predictions) == LABELS
    return "ok"


@pytest.mark.parametrize("name", list(EVIL_FOLDERS))
def test_a_folder_auto_map_never_prompts_and_never_runs(saved_model_dir, tmp_path, answers_yes, name):
    folder, marker = evil_copy(saved_model_dir, tmp_path, name)
    loads = {
        "from_pretrained": lambda: PointCLIPModel.from_pretrained(folder).classify(CLOUD, LABELS),
        "trust_remote_code=False": lambda: PointCLIPModel.from_pretrained(folder, trust_remote_code=False).classify(
            CLOUD, LABELS
        ),
        "pipeline": lambda: pipeline(PIPELINE_TASK, model=str(folder))(CLOUD, candidate_labels=LABELS),
    }
    outcomes = {how: classify_or_refuse(load) for how, load in loads.items()}
    assert answers_yes == [] and not marker.exists()
    assert len(set(outcomes.values())) == 1, outcomes  # every way of loading agrees
    if name in ("tokenizer auto_map beside a known tokenizer_class", "processor_config.json AutoProcessor auto_map"):
        assert outcomes["from_pretrained"] == "ok"  # transformers' own classes take precedence: it works


def test_the_model_processor_property_never_prompts(saved_model_dir, tmp_path, answers_yes):
    folder, marker = evil_copy(saved_model_dir, tmp_path, "tokenizer auto_map")
    model = PointCLIPModel.from_pretrained(folder)
    with pytest.raises(ValueError, match="tokenizer_config.json") as error:
        model.processor.tokenize(["a cube"])
    assert "\n" not in str(error.value)
    assert answers_yes == [] and not marker.exists()


def test_the_command_line_never_prompts_and_never_runs(saved_model_dir, tmp_path):
    folder, marker = evil_copy(saved_model_dir, tmp_path, "tokenizer auto_map, no saved processor")
    np.save(tmp_path / "cloud.npy", CLOUD)
    command = [sys.executable, "-m", "pointclip_hf.cli", "classify", str(tmp_path / "cloud.npy"), "--labels",
               ",".join(LABELS), "--model", str(folder)]  # fmt: skip
    environment = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, input="y\n", capture_output=True, text=True, env=environment, timeout=300)
    assert not marker.exists()
    assert "[y/N]" not in done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("pointclip")]
    assert done.returncode == 2 and len(lines) == 1 and "trust_remote_code=True" in lines[0], done.stderr[-2000:]


# --------------------------------------------------------------------------------------------------
# shard names in model.safetensors.index.json stay inside the model folder
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sharded_adapter_dir(tiny_clip_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("sharded") / "model"
    build_few_shot_model(tiny_clip_dir, LABELS, seed=0).save_pretrained(path, max_shard_size="20KB")
    assert (path / "model.safetensors.index.json").exists()
    return path


def redirected_shards(sharded_adapter_dir: Path, tmp_path: Path, target: str) -> Path:
    """A copy whose index names `target` for every tensor, with all the tensors saved there when it is writable."""
    folder = tmp_path / "model"
    shutil.copytree(sharded_adapter_dir, folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    tensors = {}
    for shard in set(index["weight_map"].values()):
        tensors.update(load_file(folder / shard))
    outside = Path(target) if os.path.isabs(target) else folder / target
    if outside.parent.is_dir() and os.access(outside.parent, os.W_OK):
        save_file(tensors, str(outside), metadata={"format": "pt"})
    index["weight_map"] = dict.fromkeys(index["weight_map"], target)
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


@pytest.mark.parametrize("target", ["../outside.safetensors", "sub/../../outside.safetensors", "{tmp}/abs.safetensors"])
def test_shards_outside_the_folder_are_refused(sharded_adapter_dir, tmp_path, target):
    """The outside file holds exactly the right tensors: loading it would succeed."""
    folder = redirected_shards(sharded_adapter_dir, tmp_path, target.format(tmp=tmp_path))
    with pytest.raises(ValueError, match="model.safetensors.index.json.*outside the model folder") as error:
        PointCLIPModel.from_pretrained(folder)
    assert "\n" not in str(error.value)


def test_the_refusal_does_not_tell_whether_an_outside_file_exists(sharded_adapter_dir, tmp_path):
    existing, missing = tmp_path / "exists.safetensors", tmp_path / "missing.safetensors"
    existing.write_bytes(b"not safetensors")
    messages = []
    for target in (existing, missing):
        folder = redirected_shards(sharded_adapter_dir, tmp_path / target.stem, str(target))
        with pytest.raises(ValueError) as error:
            PointCLIPModel.from_pretrained(folder)
        messages.append(str(error.value).replace(str(folder), "FOLDER").replace(target.stem, "NAME"))
    assert messages[0] == messages[1]


def test_a_sharded_save_still_loads(sharded_adapter_dir):
    saved = {}
    for shard in sharded_adapter_dir.glob("model-*.safetensors"):
        saved.update(load_file(shard))
    adapter = PointCLIPModel.from_pretrained(sharded_adapter_dir).adapter.state_dict()
    assert len(list(sharded_adapter_dir.glob("model-*.safetensors"))) > 1
    assert all(torch.equal(adapter[key.removeprefix("adapter.")], value) for key, value in saved.items()
               if key.startswith("adapter."))  # fmt: skip


@pytest.mark.parametrize("name", ["tokenizer auto_map", "processor_config.json feature extractor auto_map"])
def test_loading_the_processor_itself_never_prompts(saved_model_dir, tmp_path, answers_yes, name):
    folder, marker = evil_copy(saved_model_dir, tmp_path, name)
    for load in (PointCLIPProcessor.from_pretrained, AutoProcessor.from_pretrained):
        with pytest.raises(ValueError, match="trust_remote_code=True") as error:
            load(folder)
        assert "\n" not in str(error.value)
    assert answers_yes == [] and not marker.exists()
