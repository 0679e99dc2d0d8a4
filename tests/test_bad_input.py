"""Every bad input ends in one clear line (issue 10): clouds, labels, tokenizers, weights, configs and resumed runs
through the Python API. The `pointclip` command line is in `test_bad_input_cli.py`."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import build_tiny_clip, make_shape_dataset
from datasets import Dataset
from safetensors.torch import load_file, save_file

from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPModel, classify_files, evaluate
from pointclip_hf.model.pipeline_pointclip import label_tokens
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.training import TrainingConfig, build_few_shot_model, train_adapter
from pointclip_hf.tuning import load_logits

RNG = np.random.default_rng(0)
CLOUD = RNG.uniform(-1, 1, (64, 3)).astype(np.float32)
LABELS = ["cube", "sphere"]


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------------------------------
# clouds: one rule (pointclip_hf.model.feature_extraction_pointclip) for the processor, the pipeline and the datasets
# --------------------------------------------------------------------------------------------------
def with_point(value) -> np.ndarray:
    return np.concatenate([CLOUD, np.asarray([value], dtype=np.float32)])


BAD_CLOUDS = {
    "identical at 3.3": (np.full((50, 3), 3.3, np.float32), {}, "degenerate"),
    "identical at 12345.678": (np.full((50, 3), 12345.678, np.float32), {}, "degenerate"),
    "one coordinate of 1e20": (with_point([1e20, 0, 0]), {}, "overflow"),
    "V2 unnormalised near float max": (
        with_point([3e38, -3e38, 0]),
        dict(projection_style="pointclip_v2", normalize=False),
        "overflow",
    ),
    "float64 beyond float32": (np.concatenate([CLOUD, [[1e300, 0, 0]]]), {}, "overflow"),
    "NaN": (with_point([np.nan, 0, 0]), {}, "NaN"),
    "empty": (np.zeros((0, 3), np.float32), {}, "empty"),
    "unnormalised, out of every view": (
        CLOUD * 0.01 + np.float32([930.3, -928.4, 625.6]),
        dict(normalize=False),
        "blank",
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", list(BAD_CLOUDS))
def test_unusable_clouds_are_one_line_errors(name):
    cloud, settings, match = BAD_CLOUDS[name]
    processor = PointCLIPFeatureExtractor(num_points=64, image_size=32, **settings)
    with pytest.raises(ValueError, match=match) as error:
        processor([CLOUD, cloud])
    assert "Point cloud 1" in one_line(error)


def test_usable_odd_clouds_give_finite_pixels():
    processor = PointCLIPFeatureExtractor(num_points=64, image_size=32)
    odd = [CLOUD[::-1], CLOUD.astype(">f4"), CLOUD * 1e-20, CLOUD + 1e5]  # reversed strides, big-endian, tiny, far
    pixels = processor(odd)["pixel_values"]
    assert torch.isfinite(pixels).all() and pixels.shape[0] == 4
    assert torch.equal(pixels[0], processor(np.ascontiguousarray(CLOUD[::-1]))["pixel_values"][0])


def test_pipeline_names_the_bad_cloud(zero_shot_model):
    with pytest.raises(ValueError, match="degenerate"):
        zero_shot_model.classify(np.full((50, 3), 3.3, np.float32), LABELS)


def test_farthest_point_sampling_of_huge_clouds_warns(monkeypatch):
    monkeypatch.setattr(
        "pointclip_hf.model.feature_extraction_pointclip.FPS_WARNING_UPDATES", 1000
    )  # 64 points to 32, as 10 M would
    processor = PointCLIPFeatureExtractor(num_points=32, sampling="fps", image_size=32)
    with pytest.warns(UserWarning, match="sampling='random'"):
        processor(CLOUD)


def test_dataset_rows_are_named(tiny_clip_dir, zero_shot_model):
    dataset = make_shape_dataset(0, per_class=1, num_points=64)
    points = [np.asarray(cloud, np.float32) for cloud in dataset["points"]]
    points[2] = np.full((64, 3), 2.5, np.float32)
    bad = Dataset.from_dict({"points": points, "label": dataset["label"]}, features=dataset.features)
    with pytest.raises(ValueError, match="row 2.*degenerate"):
        evaluate(zero_shot_model, bad, progress=False)


def test_a_blank_rendering_names_its_file(tiny_clip_dir, tmp_path):
    from pointclip_hf import PointCLIPProcessor

    (tmp_path / "clouds").mkdir()
    np.save(tmp_path / "clouds" / "near.npy", CLOUD * 0.5)
    np.save(tmp_path / "clouds" / "far.npy", CLOUD * 0.01 + np.float32([930.3, -928.4, 625.6]))
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    processor = PointCLIPProcessor.from_model_source(str(tiny_clip_dir), model.config)
    processor.feature_extractor.normalize = False
    with pytest.raises(ValueError, match="far.npy.*blank") as error:
        classify_files(model, tmp_path / "clouds", LABELS, processor=processor, batch_size=2, progress=False)
    one_line(error)


# --------------------------------------------------------------------------------------------------
# labels: one rule (pointclip_hf.model.prompts), distinct after the prompts and the tokens they produce
# --------------------------------------------------------------------------------------------------
BAD_LABELS = {
    "case": (["Cup", "cup"], ValueError, "duplicates"),
    "underscore": (["teddy_bear", "teddy bear"], ValueError, "duplicates"),
    "trailing space": (["chair", "chair "], ValueError, "duplicates"),
    "None": (None, ValueError, "No labels given"),
    "newline read as a space": (["ta ble", "ta\nble"], ValueError, "duplicates"),
    "not strings": (["chair", 3], TypeError, "strings"),
    "a set": ({"chair"}, TypeError, "list"),
}


@pytest.mark.parametrize("name", list(BAD_LABELS))
def test_label_rule(name, zero_shot_model):
    labels, error_type, match = BAD_LABELS[name]
    with pytest.raises(error_type, match=match) as error:  # the whole rule: the labels, then their prompt tokens
        label_tokens(zero_shot_model, processor_for_model(zero_shot_model), labels)
    one_line(error)


def test_labels_that_differ_only_past_the_context_tie_and_are_refused(zero_shot_model):
    stem = "very " * 80
    with pytest.raises(ValueError, match="same prompt tokens"):
        zero_shot_model.classify(CLOUD, [stem + "chair", stem + "table"])


def test_a_clip_folder_without_tokenizer_is_refused(tmp_path):
    build_tiny_clip().save_pretrained(tmp_path)
    model = PointCLIPModel.from_pretrained(tmp_path)
    for labels in (["chair", "table", "lamp"], ["chair"]):
        with pytest.raises(ValueError, match="tokenizer cannot encode") as error:
            model.classify(CLOUD, labels)
        one_line(error)


# --------------------------------------------------------------------------------------------------
# weights, adapters, view weights, configs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [float("inf"), 1e308, float("nan"), -1.0, "heavy"])
def test_view_weights_are_checked_and_a_refusal_changes_nothing(tiny_clip_dir, weights):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    with pytest.raises(ValueError, match="view_weights") as error:
        model.set_view_weights([1.0] * 5 + [weights])
    one_line(error)
    assert model.config.view_weights is None


@pytest.fixture(scope="module")
def adapter_dir(tiny_clip_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("adapter")
    build_few_shot_model(tiny_clip_dir, LABELS).save_pretrained(path)
    return path


def damaged_copy(source, target, key_suffix, change):
    shutil.copytree(source, target)
    tensors = load_file(target / "model.safetensors")
    key = next(key for key in tensors if key.endswith(key_suffix))
    tensors[key] = change(tensors[key])
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


@pytest.mark.parametrize(
    "key_suffix, change, match",
    [
        ("global_proj.weight", lambda t: t.index_fill(0, torch.tensor([0]), float("nan")), "NaN"),
        ("view_norm.running_var", lambda t: -t - 1, "negative"),
        ("global_proj.weight", lambda t: t.to(torch.int32), "dtype"),
    ],
    ids=["nan", "negative running_var", "int32"],
)
def test_unusable_adapter_tensors_are_refused_at_load(adapter_dir, tmp_path, key_suffix, change, match):
    folder = damaged_copy(adapter_dir, tmp_path / "damaged", key_suffix, change)
    with pytest.raises(ValueError, match=match) as error:
        PointCLIPModel.from_pretrained(folder)
    assert "damaged" in one_line(error)


def clip_copy(tiny_clip_dir, tmp_path, change):
    folder = tmp_path / "clip"
    shutil.copytree(tiny_clip_dir, folder)
    change(folder)
    return folder


def edit_config(folder, **fields):
    config = json.loads((folder / "config.json").read_text())
    config.update(fields)
    (folder / "config.json").write_text(json.dumps(config))


def nan_weight(folder):
    tensors = load_file(folder / "model.safetensors")
    tensors["text_projection.weight"][0, 0] = float("nan")
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


BAD_CHECKPOINTS = {
    "config sizes do not fit the weights": (lambda f: edit_config(f, projection_dim=8), ValueError, "do not fit"),
    "view weights of 1e308 in config.json": (
        lambda f: edit_config(
            f,
            model_type="pointclip",
            clip_config=json.loads((f / "config.json").read_text()),
            clip_model_name_or_path=None,
            view_weights=[1e308] * 6,
        ),
        ValueError,
        "view_weights",
    ),  # fmt: skip
    "a template with another field": (
        lambda f: edit_config(
            f,
            model_type="pointclip",
            clip_config=json.loads((f / "config.json").read_text()),
            clip_model_name_or_path=None,
            prompt_templates=["a {} of {x}"],
        ),
        ValueError,
        "no other",
    ),  # fmt: skip
    "config.json is a JSON list": (lambda f: (f / "config.json").write_text("[1, 2]"), ValueError, "JSON object"),
    "deeply nested config.json": (
        lambda f: (f / "config.json").write_text("[" * 100_000 + "]" * 100_000),
        ValueError,
        "nested",
    ),
    "garbage weights": (lambda f: (f / "model.safetensors").write_bytes(b"garbage" * 10), ValueError, "safetensors"),
    "NaN in the CLIP weights": (nan_weight, ValueError, "NaN"),
    "only a pickled pytorch_model.bin": (
        lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"),
        OSError,
        "model.safetensors",
    ),
}


@pytest.mark.parametrize("name", list(BAD_CHECKPOINTS))
def test_bad_checkpoints_are_one_line_errors(tiny_clip_dir, tmp_path, name):
    change, error_type, match = BAD_CHECKPOINTS[name]
    folder = clip_copy(tiny_clip_dir, tmp_path, change)
    with pytest.raises(error_type, match=match) as error:
        PointCLIPModel.from_pretrained(folder)
    one_line(error)


def test_a_missing_local_folder_is_not_called_a_repo_id(tmp_path):
    with pytest.raises(OSError, match="No such model folder"):
        PointCLIPModel.from_pretrained(tmp_path / "missing")


# --------------------------------------------------------------------------------------------------
# logits files of another network
# --------------------------------------------------------------------------------------------------
def npy_declaring(path, shape):
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
    return path


def written(path, data: bytes):
    path.write_bytes(data)
    return path


BAD_LOGITS = {
    "empty file": (lambda p: written(p / "x.npy", b""), "EOF"),
    "garbage": (lambda p: written(p / "x.npz", b"PK\x03\x04garbage"), "damaged"),
    "1e12 rows declared": (lambda p: npy_declaring(p / "x.npy", (10**12, 40)), "limit"),
    "malformed header": (lambda p: written(p / "x.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': (((  \n"), "damaged"),
    "npz member not .npy": (lambda p: _zip_with(p / "x.npz", "logits.txt", b"1 2 3"), "not a .npy"),
    "zip bomb": (lambda p: _zip_with(p / "x.npz", "logits.npy", _npy_bytes(np.zeros((1024, 1024), np.float32))),
                 "limit"),  # 4 MB of zeros in a 4 KB member, against a 1 MB limit
}  # fmt: skip


def _npy_bytes(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _zip_with(path, member, data):
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, data)
    return path


@pytest.mark.parametrize("name", list(BAD_LOGITS))
def test_bad_logits_files(tmp_path, monkeypatch, name):
    monkeypatch.setattr("pointclip_hf.tuning.logits_files.MAX_LOGITS_BYTES", 2**20)
    make, match = BAD_LOGITS[name]
    path = make(tmp_path)
    with pytest.raises(ValueError, match=match) as error:
        load_logits(path)
    assert str(path) in one_line(error)


# --------------------------------------------------------------------------------------------------
# resume: the fingerprint covers the weights' and the clouds' content
# --------------------------------------------------------------------------------------------------
def test_evaluate_refuses_to_resume_after_the_clip_weights_changed(tiny_clip_dir, tmp_path):
    folder = clip_copy(tiny_clip_dir, tmp_path, lambda f: None)
    dataset = make_shape_dataset(0, per_class=2, num_points=64)
    output = tmp_path / "run"
    evaluate(PointCLIPModel.from_pretrained(folder), dataset, output_dir=output, progress=False)
    predictions = output / "predictions.jsonl"
    predictions.write_bytes(predictions.read_bytes()[: predictions.stat().st_size // 2])
    before = predictions.read_bytes()
    build_tiny_clip(seed=1).save_pretrained(folder)  # other weights at the same path
    with pytest.raises(ValueError, match="clip_weights_sha256"):
        evaluate(PointCLIPModel.from_pretrained(folder), dataset, output_dir=output, progress=False)
    assert predictions.read_bytes() == before


def test_classify_files_refuses_stale_scores_after_a_file_changed(zero_shot_model, tmp_path):
    (tmp_path / "clouds").mkdir()
    for index in range(2):
        np.save(tmp_path / "clouds" / f"c{index}.npy", RNG.uniform(-1, 1, (64, 3)).astype(np.float32))
    output = tmp_path / "out.jsonl"
    classify_files(zero_shot_model, tmp_path / "clouds", LABELS, output_path=output, progress=False)
    before = output.read_bytes()
    np.save(tmp_path / "clouds" / "c1.npy", RNG.uniform(-1, 1, (80, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="contents_sha256"):
        classify_files(zero_shot_model, tmp_path / "clouds", LABELS, output_path=output, progress=False)
    assert output.read_bytes() == before


def quick_training(**fields) -> TrainingConfig:
    return TrainingConfig(epochs=2, batch_size=4, augment=False, progress=False, **fields)


def test_train_adapter_refuses_other_clouds_of_the_same_size(tiny_clip_dir, tmp_path):
    first, other = make_shape_dataset(0, per_class=1, num_points=64), make_shape_dataset(5, per_class=1, num_points=64)
    first = first.cast(other.features)
    model = build_few_shot_model(tiny_clip_dir, first.features["label"].names)
    train_adapter(model, first, None, quick_training(), output_dir=tmp_path, stop_after_epoch=1)
    state = (tmp_path / "checkpoint" / "trainer_state.json").read_bytes()
    model = build_few_shot_model(tiny_clip_dir, first.features["label"].names)
    with pytest.raises(ValueError, match="train_sha256"):
        train_adapter(model, other, None, quick_training(), output_dir=tmp_path)
    assert (tmp_path / "checkpoint" / "trainer_state.json").read_bytes() == state


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda c: (c / "trainer_state.json").write_text('{"format_version": 1}'), "lacks"),
        (lambda c: (c / "trainer_state.json").write_text("{not json"), "not valid JSON"),
        (lambda c: (c / "optimizer.safetensors").write_bytes(b"\x00" * 20), "cannot be read"),
    ],
    ids=["state without keys", "state not JSON", "optimizer garbage"],
)
def test_damaged_checkpoints_are_named(tiny_clip_dir, tmp_path, damage, match):
    dataset = make_shape_dataset(0, per_class=1, num_points=64)
    names = dataset.features["label"].names
    train_adapter(build_few_shot_model(tiny_clip_dir, names), dataset, None, quick_training(), output_dir=tmp_path,
                  stop_after_epoch=1)  # fmt: skip
    damage(tmp_path / "checkpoint")
    with pytest.raises(ValueError, match=match) as error:
        train_adapter(build_few_shot_model(tiny_clip_dir, names), dataset, None, quick_training(), output_dir=tmp_path)
    assert "checkpoint" in one_line(error) and "resume=False" in str(error.value)
