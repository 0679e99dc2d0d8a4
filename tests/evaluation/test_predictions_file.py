"""Resumed runs and their bad inputs (issue 17): the fingerprint names the compute (dtype, backend, device, CPU
kernels) but not the thread count, knows a model by its weights and a file by its bytes; a resumed file's records must
name this run's labels and hold finite scores; damaged training progress, big-endian logits, empty or missing clouds,
a full disk and Ctrl-C each end in one line, and what was written stays resumable."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_shape_dataset

import pointclip_hf.evaluation.fingerprint as fingerprint_module
from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPModel, classify_files, evaluate
from pointclip_hf.atomic_files import write_file_atomically
from pointclip_hf.cli import main
from pointclip_hf.evaluation.fingerprint import run_fingerprint
from pointclip_hf.evaluation.predictions_file import PredictionsWriter
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.training import TrainingConfig, build_few_shot_model, train_adapter
from pointclip_hf.tuning import load_logits

LABELS = ["cube", "sphere"]
NUM_FILES = 6
NUM_PACED_FILES = 20


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def clouds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clouds")
    rng = np.random.default_rng(0)
    for index in range(NUM_FILES):
        np.save(folder / f"c{index}.npy", rng.uniform(-1, 1, (64, 3)).astype(np.float32))
    return folder


@pytest.fixture(scope="module")
def full_run(zero_shot_model, clouds, tmp_path_factory):
    """The bytes of an uninterrupted `classify_files` predictions file."""
    output = tmp_path_factory.mktemp("full") / "out.jsonl"
    classify_files(zero_shot_model, clouds, LABELS, output_path=output, batch_size=2, progress=False)
    return output.read_bytes()


def interrupted_copy(content: bytes, path, records: int = 2) -> bytes:
    """Write the header and the first `records` records of `content` to `path`, as an interrupted run leaves them."""
    lines = content.splitlines(keepends=True)
    path.write_bytes(b"".join(lines[: 1 + records]))
    return path.read_bytes()


def resume(model, clouds, output):
    computed = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: computed.append(kwargs["pixel_values"].shape[0]), with_kwargs=True
    )
    try:
        classify_files(model, clouds, LABELS, output_path=output, batch_size=2, progress=False)
    finally:
        hook.remove()
    return sum(computed)


# --------------------------------------------------------------------------------------------------
# the fingerprint: the compute that changes the bits, not the thread count
# --------------------------------------------------------------------------------------------------
def test_the_fingerprint_names_the_compute_and_not_the_thread_count(zero_shot_model):
    processor = processor_for_model(zero_shot_model)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_fingerprint(zero_shot_model, processor, LABELS, 2, {})
        torch.set_num_threads(2)
        two = run_fingerprint(zero_shot_model, processor, LABELS, 2, {})
    finally:
        torch.set_num_threads(threads)
    assert one == two
    compute = one["compute"]
    assert compute["device_type"] == "cpu" and compute["image_tower_backend"] == "torch"
    assert torch.backends.cpu.get_cpu_capability() in compute["cpu_kernels"]
    assert one["dtype"] == "float32"


def other_cpu(monkeypatch, model):
    monkeypatch.setattr(fingerprint_module.torch.backends.cpu, "get_cpu_capability", lambda: "NO_SIMD")
    return model


def other_backend(monkeypatch, model):
    monkeypatch.setattr(fingerprint_module, "image_tower_backend", lambda model: "onnxruntime")
    return model


def other_dtype(monkeypatch, model):
    return PointCLIPModel.from_pretrained(model.name_or_path, dtype=torch.bfloat16)


@pytest.mark.parametrize(
    "change, field, now",
    [(other_cpu, "compute.cpu_kernels", "NO_SIMD"), (other_backend, "compute.image_tower_backend", "onnxruntime"),
     (other_dtype, "dtype", "bfloat16")],
    ids=["cpu kernels", "backend", "dtype"],
)  # fmt: skip
def test_resuming_on_another_compute_is_refused_in_one_line(
    zero_shot_model, clouds, full_run, tmp_path, monkeypatch, change, field, now
):
    output = tmp_path / "out.jsonl"
    before = interrupted_copy(full_run, output)
    model = change(monkeypatch, zero_shot_model)
    with pytest.raises(ValueError, match="different run") as error:
        classify_files(model, clouds, LABELS, output_path=output, batch_size=2, progress=False)
    message = one_line(error)
    assert f"{field}: " in message and now in message and "in the file" in message
    assert output.read_bytes() == before


# --------------------------------------------------------------------------------------------------
# N14: models by their weights, files by their bytes, and a way to start afresh on both surfaces
# --------------------------------------------------------------------------------------------------
def test_the_same_model_by_a_relative_or_absolute_path_resumes(tiny_clip_dir, clouds, full_run, tmp_path, monkeypatch):
    output = tmp_path / "out.jsonl"
    interrupted_copy(full_run, output)
    monkeypatch.chdir(tiny_clip_dir.parent)
    relative = PointCLIPModel.from_pretrained(tiny_clip_dir.name)
    assert resume(relative, clouds, output) == NUM_FILES - 2
    assert output.read_bytes() == full_run


def test_a_touched_file_with_the_same_bytes_resumes(zero_shot_model, clouds, tmp_path):
    folder = shutil.copytree(clouds, tmp_path / "clouds")
    output = tmp_path / "out.jsonl"
    classify_files(zero_shot_model, folder, LABELS, output_path=output, batch_size=2, progress=False)
    complete = output.read_bytes()
    interrupted_copy(complete, output)
    os.utime(folder / "c0.npy", ns=(10**18, 10**18))  # touched, or copied without -p: same bytes, another time
    assert resume(zero_shot_model, folder, output) == NUM_FILES - 2
    assert output.read_bytes() == complete


def test_a_changed_file_with_the_same_size_and_time_is_refused(zero_shot_model, clouds, tmp_path):
    folder = shutil.copytree(clouds, tmp_path / "clouds")
    output = tmp_path / "out.jsonl"
    classify_files(zero_shot_model, folder, LABELS, output_path=output, batch_size=2, progress=False)
    before = interrupted_copy(output.read_bytes(), output)
    stat = os.stat(folder / "c1.npy")
    np.save(folder / "c1.npy", np.random.default_rng(9).uniform(-1, 1, (64, 3)).astype(np.float32))
    os.utime(folder / "c1.npy", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as `cp -p` leaves it
    assert os.stat(folder / "c1.npy").st_size == stat.st_size
    with pytest.raises(ValueError, match="data.contents_sha256") as error:
        classify_files(zero_shot_model, folder, LABELS, output_path=output, batch_size=2, progress=False)
    assert "resume=False" in one_line(error) and "--no-resume" in str(error.value)
    assert output.read_bytes() == before


def test_the_cli_refuses_another_run_and_starts_afresh_with_no_resume(tiny_clip_dir, clouds, tmp_path, capsys):
    output = tmp_path / "out.jsonl"
    argv = ["classify", str(clouds), "--output", str(output), "--model", str(tiny_clip_dir), "--json", "-q"]
    assert main([*argv, "--labels", "cube,sphere"]) == 0
    capsys.readouterr()
    assert main([*argv, "--labels", "cube,cone"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "different run" in err and "--no-resume" in err
    assert main([*argv, "--labels", "cube,cone", "--no-resume"]) == 0
    assert json.loads(output.read_text().splitlines()[0])["header"]["fingerprint"]["labels"] == ["cube", "cone"]


# --------------------------------------------------------------------------------------------------
# records of a resumed file, and scores never written non-finite
# --------------------------------------------------------------------------------------------------
def edit_second_line(content: bytes, edit) -> bytes:
    lines = content.splitlines(keepends=True)
    record = json.loads(lines[1])
    edit(record)
    return b"".join([lines[0], json.dumps(record).encode() + b"\n", *lines[2:4]])


BAD_RECORDS = {
    "unknown prediction": (lambda r: r.update(prediction="teapot"), 'names the label "teapot"'),
    "unknown top_k label": (lambda r: r["top_k"][1].update(label="teapot"), 'names the label "teapot"'),
    "NaN score": (lambda r: r.update(score=float("nan")), "not a number in \\[0, 1\\]"),
    "score above 1": (lambda r: r["top_k"][0].update(score=7.5), "not a number in \\[0, 1\\]"),
    "no top_k": (lambda r: r.pop("top_k"), "no top_k list"),
    "index not an integer": (lambda r: r.update(index="0"), "not a prediction record"),
}


@pytest.mark.parametrize("name", list(BAD_RECORDS))
def test_a_resumed_record_must_fit_the_run(zero_shot_model, clouds, full_run, tmp_path, name):
    edit, match = BAD_RECORDS[name]
    output = tmp_path / "out.jsonl"
    output.write_bytes(edit_second_line(full_run, edit))
    before = output.read_bytes()
    with pytest.raises(ValueError, match=f"damaged at line 2: .*{match}") as error:
        classify_files(zero_shot_model, clouds, LABELS, output_path=output, batch_size=2, progress=False)
    assert "--no-resume" in one_line(error)
    assert output.read_bytes() == before


def test_an_evaluation_record_with_an_unknown_true_label_is_refused(zero_shot_model, tmp_path):
    dataset = make_shape_dataset(0, per_class=1, num_points=64)
    evaluate(zero_shot_model, dataset, output_dir=tmp_path, batch_size=2, progress=False)
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(edit_second_line(path.read_bytes(), lambda r: r.update(label="teapot")))
    with pytest.raises(ValueError, match='names the label "teapot"') as error:
        evaluate(zero_shot_model, dataset, output_dir=tmp_path, batch_size=2, progress=False)
    one_line(error)


def test_non_finite_scores_are_never_written(zero_shot_model, clouds, tmp_path):
    def nan_logits(module, args, kwargs, output):
        output.logits = torch.full_like(output.logits, float("nan"))
        return output

    output = tmp_path / "out.jsonl"
    hook = zero_shot_model.register_forward_hook(nan_logits, with_kwargs=True)
    try:
        with pytest.raises(ValueError, match="c0.npy' are NaN or infinite") as error:
            classify_files(zero_shot_model, clouds, LABELS, output_path=output, batch_size=2, progress=False)
    finally:
        hook.remove()
    one_line(error)
    assert len(output.read_bytes().splitlines()) == 1  # the header only


# --------------------------------------------------------------------------------------------------
# training progress in trainer_state.json
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_run(tiny_clip_dir, tmp_path_factory):
    dataset = make_shape_dataset(0, per_class=1, num_points=64)
    folder = tmp_path_factory.mktemp("training")
    config = TrainingConfig(epochs=2, batch_size=4, augment=False, progress=False)
    model = build_few_shot_model(tiny_clip_dir, dataset.features["label"].names)
    train_adapter(model, dataset, None, config, output_dir=folder, stop_after_epoch=1)
    return folder, dataset, config


BAD_PROGRESS = {
    "epoch -5": (dict(epoch=-5), "epoch -5"),
    "epoch 1e6": (dict(epoch=1_000_000), "epoch 1000000"),
    "epoch 1.5": (dict(epoch=1.5), "epoch 1.5"),
    "history 5": (dict(history=5), "history"),
    "history out of order": (dict(history=[{"epoch": 2}]), "history"),
    "best_epoch beyond": (dict(best_epoch=7), "best_epoch 7"),
    "NaN accuracy": (dict(best_validation_accuracy=float("nan")), "best_validation_accuracy"),
}


@pytest.mark.parametrize("name", list(BAD_PROGRESS))
def test_damaged_training_progress_is_one_line(tiny_clip_dir, checkpoint_run, tmp_path, name):
    source, dataset, config = checkpoint_run
    folder = shutil.copytree(source, tmp_path / "run")
    state_file = folder / "checkpoint" / "trainer_state.json"
    fields, match = BAD_PROGRESS[name]
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), **fields}))
    model = build_few_shot_model(tiny_clip_dir, dataset.features["label"].names)
    with pytest.raises(ValueError, match=f"damaged: trainer_state.json has .*{match}") as error:
        train_adapter(model, dataset, None, config, output_dir=folder)
    assert "--no-resume" in one_line(error)


def test_the_cli_trains_afresh_with_no_resume():
    from pointclip_hf.cli import build_parser

    args = build_parser().parse_args(["train", "--dataset", "d", "--output-dir", "o", "--no-resume"])
    assert args.no_resume is True


# --------------------------------------------------------------------------------------------------
# logits byte order, empty batches, missing and ragged clouds
# --------------------------------------------------------------------------------------------------
def test_big_endian_logits_are_read_as_their_values(tmp_path):
    logits = np.random.default_rng(0).normal(size=(4, 3))
    np.save(tmp_path / "big.npy", logits.astype(">f4"))
    np.savez(tmp_path / "big.npz", logits=logits.astype(">f8"))
    assert torch.equal(load_logits(tmp_path / "big.npy"), torch.from_numpy(logits.astype(np.float32)))
    assert torch.equal(load_logits(tmp_path / "big.npz"), torch.from_numpy(logits))


CLOUD = np.random.default_rng(1).uniform(-1, 1, (64, 3)).astype(np.float32)
BAD_BATCHES = {
    "empty numpy batch": (np.zeros((0, 500, 3), np.float32), ValueError, "No point clouds given|is empty"),
    "empty tensor batch": (torch.zeros(0, 500, 3), ValueError, "No point clouds given|is empty"),
    "empty list": ([], ValueError, "No point clouds given"),
    "None first": ([None, CLOUD], TypeError, "Point cloud 0 is None"),
    "None second": ([CLOUD, None], TypeError, "Point cloud 1 is None"),
    "ragged nested list": ([[0.0, 0.0, 0.0], [1.0, 1.0]], ValueError, "ragged"),
}


@pytest.mark.parametrize("surface", ["classify", "processor"])
@pytest.mark.parametrize("name", list(BAD_BATCHES))
def test_empty_missing_and_ragged_clouds_are_one_line(zero_shot_model, surface, name):
    clouds, error_type, match = BAD_BATCHES[name]
    call = {"classify": lambda: zero_shot_model.classify(clouds, LABELS),
            "processor": lambda: PointCLIPFeatureExtractor(num_points=32, image_size=32)(clouds)}[surface]  # fmt: skip
    with pytest.raises(error_type, match=match) as error:
        call()
    message = one_line(error)
    assert "inhomogeneous" not in message


# --------------------------------------------------------------------------------------------------
# N17: a full disk names the file; Ctrl-C is one line, exit 130, and the run resumes to the same bytes
# --------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_names_the_predictions_file():
    with pytest.raises(OSError, match="Cannot write '/dev/full': No space left on device") as error:
        PredictionsWriter(Path("/dev/full"), {"format": "x"}, 0)
    assert error.value.errno == errno.ENOSPC
    one_line(error)


def test_a_file_size_limit_names_the_file_and_leaves_it_untouched(tmp_path):
    import resource

    target = tmp_path / "report.json"
    target.write_bytes(b"old")
    limits, handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, limits[1]))
        with pytest.raises(OSError, match="Cannot write .*report.json.*File too large") as error:
            write_file_atomically(target, b"x" * 4096)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    one_line(error)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["report.json"]


LIMITED_CLI = """
import resource, signal, sys
from pointclip_hf.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.exit(main(sys.argv[2:]))
"""


PACED_CLI = """
import signal, sys, time
from pointclip_hf.cli import main
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if pytest runs in a background job
from pointclip_hf.evaluation.predictions_file import PredictionsWriter
write = PredictionsWriter.write

def paced_write(self, records):  # leave the test time to interrupt the run in the middle, on any machine
    write(self, records)
    time.sleep(0.2)

PredictionsWriter.write = paced_write
sys.exit(main(sys.argv[1:]))
"""


def run_pointclip(*args, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)  # fmt: skip


def cli_classify(tiny_clip_dir, clouds, output) -> list[str]:
    return ["classify", str(clouds), "--labels", "cube,sphere", "--model", str(tiny_clip_dir), "--output",
            str(output), "--batch-size", "1", "--json"]  # fmt: skip


def test_a_full_disk_during_classify_is_one_line_and_resumes(tiny_clip_dir, clouds, tmp_path, capsys):
    reference = tmp_path / "reference.jsonl"
    assert main(cli_classify(tiny_clip_dir, clouds, reference)) == 0
    lines = reference.read_bytes().splitlines(keepends=True)
    output = tmp_path / "out.jsonl"
    limit = len(lines[0]) + len(lines[1]) + len(lines[2]) // 2  # the disk fills up in the second record
    process = run_pointclip("-c", LIMITED_CLI, str(limit), *cli_classify(tiny_clip_dir, clouds, output))
    _, err = process.communicate(timeout=300)
    err_lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 1, err
    assert err_lines[-1] == f"pointclip classify: error: Cannot write {str(output)!r}: File too large.", err
    assert not any("Traceback" in line for line in err_lines)
    capsys.readouterr()
    assert main(cli_classify(tiny_clip_dir, clouds, output)) == 0
    assert output.read_bytes() == reference.read_bytes()


def test_ctrl_c_during_classify_is_one_line_exit_130_and_resumes(tiny_clip_dir, tmp_path, capsys):
    clouds = tmp_path / "clouds"
    clouds.mkdir()
    rng = np.random.default_rng(3)
    for index in range(NUM_PACED_FILES):
        np.save(clouds / f"c{index:03d}.npy", rng.uniform(-1, 1, (64, 3)).astype(np.float32))
    output = tmp_path / "out.jsonl"
    process = run_pointclip("-c", PACED_CLI, *cli_classify(tiny_clip_dir, clouds, output))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if output.exists() and output.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "pointclip classify: interrupted" and "Traceback" not in err, err
    written = output.read_bytes().count(b"\n") - 1
    assert 2 <= written < NUM_PACED_FILES
    assert main(cli_classify(tiny_clip_dir, clouds, output)) == 0
    reference = tmp_path / "reference.jsonl"
    assert main(cli_classify(tiny_clip_dir, clouds, reference)) == 0
    assert output.read_bytes() == reference.read_bytes()


def test_ctrl_c_during_evaluate_is_one_line_exit_130_and_resumes(tiny_clip_dir, tmp_path, monkeypatch, capsys):
    tree = tmp_path / "tree"
    rng = np.random.default_rng(4)
    for name in LABELS:
        (tree / name).mkdir(parents=True)
        for index in range(3):
            np.save(tree / name / f"{index}.npy", rng.uniform(-1, 1, (64, 3)).astype(np.float32))
    argv = ["evaluate", "--dataset", str(tree), "--split", "train", "--model", str(tiny_clip_dir), "--batch-size",
            "2", "-q", "--output-dir"]  # fmt: skip
    assert main([*argv, str(tmp_path / "reference")]) == 0
    write = PredictionsWriter.write
    calls = []

    def interrupted_write(self, records):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        write(self, records)

    monkeypatch.setattr(PredictionsWriter, "write", interrupted_write)
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "run")]) == 130
    assert capsys.readouterr().err.strip() == "pointclip evaluate: interrupted"
    monkeypatch.setattr(PredictionsWriter, "write", write)
    assert main([*argv, str(tmp_path / "run")]) == 0
    predictions = "predictions.jsonl"
    assert (tmp_path / "run" / predictions).read_bytes() == (tmp_path / "reference" / predictions).read_bytes()
