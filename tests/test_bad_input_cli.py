"""Every bad input to the `pointclip` command line ends in one line on stderr and exit code 2 (1 for a failure that is
not the input's), checked before a model loads or a dataset is encoded (issue 10)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_clip

from pointclip_hf.cli import main
from pointclip_hf.data import load_point_cloud_dataset

EXAMPLES = Path(__file__).parent.parent / "examples"
MUG = str(EXAMPLES / "mug.npy")
MISSING_MODEL = "/nonexistent/model"  # loading it would fail: an argument error must come first


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main([str(arg) for arg in argv])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("pointclip "), lines  # before it, at most transformers' progress bars
    assert not any(line.startswith(("pointclip", "Traceback", "  File")) for line in lines[:-1]), lines
    return code, lines[-1]


@pytest.fixture(scope="module")
def clip_without_tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip-without-tokenizer")
    build_tiny_clip().save_pretrained(path)
    return path


@pytest.fixture
def clouds(tmp_path):
    folder = tmp_path / "clouds"
    folder.mkdir()
    np.save(folder / "good.npy", np.random.default_rng(0).uniform(-1, 1, (64, 3)).astype(np.float32))
    np.save(folder / "flat.npy", np.full((64, 3), 12345.678, np.float32))
    return folder


def class_tree(root: Path, names) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        np.save(root / name / "a.npy", np.random.default_rng(1).uniform(-1, 1, (64, 3)).astype(np.float32))
    return root


CASES = {
    "labels that tie": (lambda d, t: ["classify", MUG, "--labels", "Cup,cup", "--model", d["clip"]], "duplicates"),
    "tokenizer missing": (lambda d, t: ["classify", MUG, "--labels", "cup,table", "--model", d["no_tok"]],
                          "tokenizer cannot encode"),
    "degenerate cloud": (lambda d, t: ["classify", d["clouds"] / "flat.npy", "--labels", "a,b", "--model", d["clip"]],
                         "degenerate"),
    "missing model folder": (lambda d, t: ["classify", MUG, "--labels", "a,b", "--model", t / "none"],
                             "No such model folder"),
    "missing file, checked first": (lambda d, t: ["classify", t / "none.npy", "--labels", "a,b", "--model",
                                                  MISSING_MODEL], "none.npy"),
    "bad labels, checked first": (lambda d, t: ["classify", MUG, "--labels", "a,a", "--model", MISSING_MODEL],
                                  "duplicates"),
    "empty label item, checked first": (lambda d, t: ["classify", MUG, "--labels", "a,,b", "--model",
                                                       MISSING_MODEL], "--labels holds an empty item"),
    "empty part item": (lambda d, t: ["segment", MUG, "--object", "mug", "--parts", "body,", "--out", t / "o.ply",
                                          "--model", t / "none"],
                        "--parts holds an empty item"),
    "bad --fix, checked first": (lambda d, t: ["search", "--dataset", t / "none", "--fix", "0=0.75,foo",
                                               "--output-dir", t / "o", "--model", MISSING_MODEL], "'foo'"),
    "bad --grid, checked first": (lambda d, t: ["search", "--dataset", t / "none", "--grid", "0.5,x",
                                                "--output-dir", t / "o", "--model", MISSING_MODEL], "--grid"),
    "nested prompt file, checked first": (lambda d, t: ["search", "--dataset", t / "none", "--prompts",
                                                        d["nested_json"], "--output-dir", t / "o", "--model",
                                                        MISSING_MODEL], "nested"),
    "missing prompt file, checked first": (lambda d, t: ["search", "--dataset", t / "none", "--prompts",
                                                         t / "p.json", "--output-dir", t / "o", "--model",
                                                         MISSING_MODEL], "No such prompt file"),
    "missing logits, checked first": (lambda d, t: ["ensemble", "--dataset", t / "none", "--validation-split", "test",
                                                    "--validation-logits", t / "l.npy", "--model", MISSING_MODEL],
                                      "l.npy"),
    "garbage logits, checked first": (lambda d, t: ["ensemble", "--dataset", t / "none", "--validation-split", "test",
                                                    "--validation-logits", d["garbage_logits"], "--model",
                                                    MISSING_MODEL], "damaged"),
    "one bad file among workers": (lambda d, t: ["classify", d["clouds"], "--labels", "a,b", "--num-workers", "2",
                                                 "--output", t / "out.jsonl", "--json", "--model", d["clip"]],
                                   "flat.npy"),
    "class folders read alike": (lambda d, t: ["evaluate", "--dataset", class_tree(t / "tree", ["b ad", "b\nad"]),
                                               "--split", "train", "--output-dir", t / "ev", "--model", d["clip"]],
                                 "duplicates"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_code_2(name, tiny_clip_dir, clip_without_tokenizer, clouds, tmp_path, capsys):
    garbage_logits = tmp_path / "garbage.npz"
    garbage_logits.write_bytes(b"PK\x03\x04 not a zip")
    nested_json = tmp_path / "prompts.json"
    nested_json.write_text("[" * 100_000 + "]" * 100_000)
    paths = dict(clip=tiny_clip_dir, no_tok=clip_without_tokenizer, clouds=clouds, garbage_logits=garbage_logits,
                 nested_json=nested_json)  # fmt: skip
    make_argv, expected = CASES[name]
    code, err = run_cli(make_argv(paths, tmp_path), capsys)
    assert code == 2, err
    assert err.startswith("pointclip ") and expected in err, err


def test_other_failures_exit_1_with_one_line(monkeypatch, tmp_path, capsys):
    def broken_run(args):
        raise RuntimeError("CUDA error: an illegal memory access\nwith a second line")

    monkeypatch.setattr("pointclip_hf.commands.render.run", broken_run)
    code, err = run_cli(["render", MUG, "--out", tmp_path / "x.png"], capsys)
    assert code == 1 and "error: RuntimeError: CUDA error" in err


def test_class_folders_starting_with_underscore_are_classes(tmp_path):
    root = class_tree(tmp_path / "tree", ["_misc", "chair", "__MACOSX", ".hidden"])
    dataset = load_point_cloud_dataset(root)
    assert dataset.features["label"].names == ["_misc", "chair"]


def test_a_clean_run_still_exits_0(tiny_clip_dir, clouds, capsys):
    shutil.move(clouds / "flat.npy", clouds.parent / "flat.npy")
    assert main(["classify", str(clouds), "--labels", "a,b", "--model", str(tiny_clip_dir), "--json"]) == 0
    assert capsys.readouterr().err.count("error") == 0
