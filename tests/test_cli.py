"""The `pointclip` command line: classify and render, and clean errors (exit code 2)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pointclip_hf.cli import main

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_classify_json_matches_python_api(tiny_clip_dir, zero_shot_model, capsys):
    files = [str(EXAMPLES / "mug.npy"), str(EXAMPLES / "table.npy")]
    assert main(["classify", *files, "--labels", "cup,table,bear", "--model", str(tiny_clip_dir), "--json",
                 "--dtype", "float32"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert [entry["file"] for entry in printed] == files
    expected = zero_shot_model.classify(files, ["cup", "table", "bear"])
    printed_labels = [[p["label"] for p in entry["predictions"]] for entry in printed]
    assert printed_labels == [[p["label"] for p in r] for r in expected]


def test_classify_text_output_and_top_k(tiny_clip_dir, capsys):
    assert (
        main(
            [
                "classify",
                str(EXAMPLES / "mug.npy"),
                "--labels",
                "cup,table",
                "--top-k",
                "1",
                "--model",
                str(tiny_clip_dir),
            ]
        )
        == 0
    )
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(EXAMPLES / "mug.npy") + ": ") and line.count(",") == 0


@pytest.mark.parametrize("projection", ["pointclip_v1", "pointclip_v2"])
def test_render_writes_a_grid_png(tmp_path, projection):
    out = tmp_path / "views.png"
    assert main(["render", str(EXAMPLES / "table.npy"), "--out", str(out), "--projection", projection]) == 0
    image = np.asarray(Image.open(out))
    assert image.ndim == 2 and image.shape[0] > 100 and image.shape[1] > 300
    assert image.min() < 60 and image.max() > 200  # something drawn on a background


def test_bad_input_exits_2_with_a_message(tiny_clip_dir, tmp_path, capsys):
    (tmp_path / "cloud.foo").write_text("1 2 3\n")
    assert main(["classify", str(tmp_path / "cloud.foo"), "--labels", "a,b", "--model", str(tiny_clip_dir)]) == 2
    assert "extension" in capsys.readouterr().err
    assert main(["classify", str(EXAMPLES / "mug.npy"), "--labels", "a,a", "--model", str(tiny_clip_dir)]) == 2
    assert "duplicates" in capsys.readouterr().err
    assert main(["classify", str(tmp_path / "missing.npy"), "--labels", "a,b", "--model", str(tiny_clip_dir)]) == 2
    assert "missing.npy" in capsys.readouterr().err
    assert main(["classify", str(EXAMPLES / "mug.npy"), "--labels", ",", "--model", str(tiny_clip_dir)]) == 2
    assert "empty" in capsys.readouterr().err


def test_console_script_is_installed(tiny_clip_dir):
    done = subprocess.run(
        [
            Path(sys.executable).parent / "pointclip",
            "classify",
            str(EXAMPLES / "mug.npy"),
            "--labels",
            "cup,table",
            "--model",
            str(tiny_clip_dir),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "mug.npy: " in done.stdout


def test_evaluate_writes_report_and_confusion_matrix(tiny_clip_dir, class_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                str(class_folder),
                "--split",
                "train",
                "--model",
                str(tiny_clip_dir),
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["num_samples"] == 6 and f"accuracy {report['accuracy']:.4f}" in printed
    assert report["setup"]["projection_style"] == "pointclip_v1" and "projection pointclip_v1" in printed
    assert Image.open(out / "confusion_matrix.png").size[0] > 50
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()[1:]]
    assert [record["path"] for record in records] == sorted(str(p) for p in class_folder.rglob("*.npy"))  # 6 clouds


def test_classify_folder_streams_json_lines(tiny_clip_dir, class_folder, tmp_path, capsys, zero_shot_model):
    out = tmp_path / "predictions.jsonl"
    assert (
        main(
            [
                "classify",
                str(class_folder),
                "--labels",
                "box,chair",
                "--model",
                str(tiny_clip_dir),
                "--output",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    files = sorted(str(p) for p in class_folder.rglob("*.npy"))
    assert [entry["file"] for entry in printed] == files
    lines = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert [line["path"] for line in lines] == files
    expected = zero_shot_model.classify(files, ["box", "chair"])
    assert [entry["predictions"][0]["label"] for entry in printed] == [r[0]["label"] for r in expected]


def test_example_scripts_run(tiny_clip_dir, tmp_path):
    rendered = subprocess.run(
        [sys.executable, str(EXAMPLES / "render_depth_views.py"), "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert len(list(tmp_path.glob("*.png"))) == 9
    classified = subprocess.run(
        [sys.executable, str(EXAMPLES / "zero_shot_classification.py"), "--model", str(tiny_clip_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert classified.returncode == 0, classified.stderr
    assert "pointclip_v2:" in classified.stdout and "mug.npy" in classified.stdout


def test_tower_budget_must_be_positive(tiny_clip_dir, capsys):
    assert (
        main(
            [
                "classify",
                str(EXAMPLES / "mug.npy"),
                "--labels",
                "a,b",
                "--model",
                str(tiny_clip_dir),
                "--max-images-per-batch",
                "0",
            ]
        )
        == 2
    )
    assert "max_images_per_batch must be at least 1" in capsys.readouterr().err


def test_zero_shot_classify_needs_labels(tiny_clip_dir, capsys):
    assert main(["classify", str(EXAMPLES / "mug.npy"), "--model", str(tiny_clip_dir)]) == 2
    assert "--labels is required" in capsys.readouterr().err
