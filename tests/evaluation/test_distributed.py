"""A real two-process CPU run of `evaluate` and `classify_files` (torchrun + accelerate, gloo), interrupted and
resumed, must give exactly the files and results of a single-process run: same order, no duplicates, no losses.

`accelerate launch --cpu --num_processes 2` starts a single process unless MPI is set up, so the processes are
started with `python -m torch.distributed.run` (what `accelerate launch --multi_gpu` runs too); the library detects
the launch and creates the `Accelerator` itself, on the CPU since `ACCELERATE_USE_CPU=1`.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from datasets import Array2D, ClassLabel, Dataset, Features, load_from_disk
from transformers import AutoTokenizer

from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor
from pointclip_hf.evaluation import classify_files, evaluate

pytest.importorskip("accelerate")

LABELS = ["cube", "sphere", "cone"]
NUM_CLOUDS = 11  # odd: the two shards differ in size
NUM_FILES = 7
BATCH_SIZE = 2

SCRIPT = r"""
import json, os, sys

from datasets import load_from_disk
from transformers import AutoTokenizer

from pointclip_hf import PointCLIPModel, PointCLIPProcessor, PointCLIPFeatureExtractor
from pointclip_hf.evaluation import classify_files, evaluate

clip_dir, data_dir, out_dir = sys.argv[1:4]
model = PointCLIPModel.from_pretrained(clip_dir)
model.processor = PointCLIPProcessor(
    PointCLIPFeatureExtractor(num_points=256, image_size=32), AutoTokenizer.from_pretrained(clip_dir)
)
stop_after = int(os.environ.get("STOP_AFTER_BATCHES", "0"))
if stop_after and os.environ["RANK"] == "0":  # simulate a crash of process 0 in the middle of the run
    calls = []

    def crash(module, args, kwargs):
        calls.append(1)
        if len(calls) > stop_after:
            raise RuntimeError("simulated crash")

    model.register_forward_pre_hook(crash, with_kwargs=True)
computed = []
model.register_forward_pre_hook(lambda m, a, kw: computed.append(kw["pixel_values"].shape[0]), with_kwargs=True)
report = evaluate(
    model, load_from_disk(os.path.join(data_dir, "dataset")), batch_size=BATCH_SIZE,
    output_dir=os.path.join(out_dir, "eval"), progress=False,
)
evaluated_here = sum(computed)
computed.clear()
results = classify_files(
    model, os.path.join(data_dir, "files"), LABELS, batch_size=BATCH_SIZE,
    output_path=os.path.join(out_dir, "files.jsonl"), top_k=2, progress=False,
)
with open(os.path.join(out_dir, "returned.rank" + os.environ["RANK"] + ".json"), "w") as handle:
    json.dump({"report": report.to_dict(), "results": results, "evaluated_here": evaluated_here}, handle)
""".replace("BATCH_SIZE", str(BATCH_SIZE)).replace("LABELS", repr(LABELS))


def make_data(folder):
    rng = np.random.default_rng(7)
    clouds = [rng.normal(size=(int(rng.integers(200, 500)), 3)).astype(np.float32) for _ in range(NUM_CLOUDS)]
    features = Features({"points": Array2D((None, 3), "float32"), "label": ClassLabel(names=LABELS)})
    labels = rng.integers(0, len(LABELS), NUM_CLOUDS).tolist()
    Dataset.from_dict({"points": clouds, "label": labels}, features=features).save_to_disk(folder / "dataset")
    (folder / "files").mkdir()
    for i in range(NUM_FILES):
        np.save(folder / "files" / f"cloud_{i:02d}.npy", clouds[i])


def launch(script, clip_dir, data_dir, out_dir, **extra_env):
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        ACCELERATE_USE_CPU="1",
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        **extra_env,
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(script), str(clip_dir), str(data_dir), str(out_dir)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


def without_runtime(report: dict) -> dict:
    setup = {key: value for key, value in report["setup"].items() if key != "runtime"}
    return {**report, "setup": setup}


def test_two_processes_match_one_exactly(tiny_clip_dir, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    make_data(data_dir)
    script = tmp_path / "run_eval.py"
    script.write_text(SCRIPT)

    # 1. A two-process run whose process 0 crashes after two batches; its shard file also gets a half-written line.
    out = tmp_path / "distributed"
    crashed = launch(script, tiny_clip_dir, data_dir, out, STOP_AFTER_BATCHES="2")
    assert crashed.returncode != 0, crashed.stdout + crashed.stderr
    assert "simulated crash" in crashed.stdout + crashed.stderr
    shard0 = out / "eval" / "predictions.rank0.jsonl"
    lines = shard0.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 + 2 * BATCH_SIZE  # header + the records of two batches
    assert [json.loads(line)["index"] for line in lines[1:]] == [0, 2, 4, 6]
    assert not (out / "eval" / "predictions.jsonl").exists()
    with open(shard0, "ab") as handle:
        handle.write(lines[-1].replace(b'"index": 6', b'"index": 8')[:40])

    # 2. Resumed with two processes.
    resumed = launch(script, tiny_clip_dir, data_dir, out)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert sorted(os.listdir(out / "eval")) == ["confusion_matrix.png", "predictions.jsonl", "report.json"]

    # 3. The same work in this single process.
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    model.processor = PointCLIPProcessor(
        PointCLIPFeatureExtractor(num_points=256, image_size=32), AutoTokenizer.from_pretrained(tiny_clip_dir)
    )
    single = tmp_path / "single"
    report = evaluate(
        model, load_from_disk(data_dir / "dataset"), batch_size=5, output_dir=single / "eval", progress=False
    )
    results = classify_files(
        model, data_dir / "files", LABELS, batch_size=5, output_path=single / "files.jsonl", top_k=2, progress=False
    )

    merged = (out / "eval" / "predictions.jsonl").read_bytes()
    assert merged == (single / "eval" / "predictions.jsonl").read_bytes()
    indices = [json.loads(line)["index"] for line in merged.splitlines()[1:]]
    assert indices == list(range(NUM_CLOUDS))
    assert (out / "files.jsonl").read_bytes() == (single / "files.jsonl").read_bytes()
    assert not list(out.glob("**/*.rank*.jsonl"))

    expected_report = without_runtime(report.to_dict())
    assert without_runtime(json.loads((out / "eval" / "report.json").read_text())) == expected_report
    for rank in (0, 1):
        returned = json.loads((out / f"returned.rank{rank}.json").read_text())
        assert without_runtime(returned["report"]) == expected_report
        assert returned["report"]["setup"]["runtime"]["num_processes"] == 2
        assert returned["results"] == results
    assert report.num_samples == NUM_CLOUDS and len(results) == NUM_FILES
    # the resumed process 0 computed only what its shard file lacked: cloud 8 (its line was cut short) and cloud 10
    evaluated = [json.loads((out / f"returned.rank{rank}.json").read_text())["evaluated_here"] for rank in (0, 1)]
    assert evaluated[0] == 6 - 2 * BATCH_SIZE and evaluated[1] <= 5
