"""CLI conventions: --version, -q, defaults in help, HF_HUB_DISABLE_PROGRESS_BARS, one-line warnings, exit codes 2
(usage/input) and 1 (other failures), push's Hub flags, and the index / retrieve commands."""

import argparse
import importlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import HfApi

import pointclip_hf
from pointclip_hf.cli import build_parser, main
from pointclip_hf.commands import render

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pointclip_hf {pointclip_hf.__version__}"


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every command and nested command (`cache build`) of `parser`, by its full name."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                found[f"{prefix}{name}"] = command
                found.update(commands(command, f"{prefix}{name} "))
    return found


def test_every_default_is_in_the_help():
    missing = [
        f"{name} {action.option_strings}"
        for name, command in commands(build_parser()).items()
        for action in command._actions
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in (action.help or "")
    ]
    assert not missing
    assert "(default: 32)" in commands(build_parser())["index"].format_help().replace("\n", " ").replace("  ", " ")


def test_every_option_says_what_it_is():
    bare = [
        f"{name} {action.option_strings or action.dest}"
        for name, command in commands(build_parser()).items()
        for action in command._actions
        if not action.help or action.help.startswith("default:")
    ]
    assert not bare


def test_part_segmentation_projection_is_offered_only_where_it_works(capsys):
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    offered = {
        name: action.choices
        for name, command in subparsers.choices.items()
        for action in command._actions
        if "--projection" in action.option_strings
    }
    assert set(offered) == {"classify", "train", "evaluate", "search", "ensemble", "index", "render"}
    assert [name for name, choices in offered.items() if "pointclip_v2_part_segmentation" in choices] == ["render"]
    with pytest.raises(SystemExit):
        main(["classify", "cloud.npy", "--labels", "a,b", "--projection", "pointclip_v2_part_segmentation"])
    assert "invalid choice: 'pointclip_v2_part_segmentation'" in capsys.readouterr().err


def warn_and_fail(error):
    def run(args):
        warnings.warn("first line\n  second line", UserWarning, stacklevel=1)
        if error is not None:
            raise error
        return 0

    return run


def test_warnings_print_as_one_line(monkeypatch, capsys):
    monkeypatch.setattr(render, "run", warn_and_fail(None))
    assert main(["render", "x.npy", "--out", "x.png"]) == 0
    assert capsys.readouterr().err == "pointclip: warning: UserWarning: first line second line\n"


@pytest.mark.parametrize(
    "error, code",
    [
        (ValueError("bad value\nin two lines"), 2),
        (FileNotFoundError(2, "No such file", "cloud.npy"), 2),
        (pointclip_hf.PointCloudFileError("Cannot load point cloud 'a.ply': truncated"), 2),
        (ConnectionError("connection refused"), 1),
        (RuntimeError("CUDA out of memory"), 1),
        (OSError(28, "No space left on device"), 1),
    ],
)
def test_exit_codes(monkeypatch, capsys, error, code):
    monkeypatch.setattr(render, "run", warn_and_fail(error))
    assert main(["render", "x.npy", "--out", "x.png"]) == code
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[1].startswith("pointclip render: error: ")


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["index", "--no-such-option"])
    assert exit_info.value.code == 2


def write_clouds(folder):
    from conftest import synthetic_cloud

    rng = np.random.default_rng(5)
    folder.mkdir()
    for i in range(4):
        np.save(folder / f"{i}.npy", synthetic_cloud(i, rng))


def test_index_and_retrieve(tiny_clip_dir, zero_shot_model, tmp_path, capsys):
    write_clouds(tmp_path / "clouds")
    model = ["--model", str(tiny_clip_dir), "--dtype", "float32"]
    assert main(["-q", "index", str(tmp_path / "clouds"), "--output", str(tmp_path / "index"), *model]) == 0
    captured = capsys.readouterr()
    assert "indexed 4 clouds" in captured.out and "Indexing" not in captured.err
    assert main(["retrieve", str(tmp_path / "index"), "--text", "sphere", "--like", str(tmp_path / "clouds" / "2.npy"),
                 "--top-k", "2", "--json", "--dtype", "float32"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    index = pointclip_hf.PointCloudIndex.load(tmp_path / "index")
    assert printed[0]["results"] == index.search_text(zero_shot_model, ["sphere"], top_k=2)[0]
    assert printed[1]["results"][0]["path"] == str(tmp_path / "clouds" / "2.npy")

    assert main(["retrieve", str(tmp_path / "index")]) == 2
    assert "--text or --like" in capsys.readouterr().err
    assert main(["retrieve", str(tmp_path / "clouds"), "--text", "a"]) == 2
    assert "no finished index" in capsys.readouterr().err


def test_progress_bars_honour_the_hub_variable(tiny_clip_dir, tmp_path, capsys, monkeypatch):
    """`HF_HUB_DISABLE_PROGRESS_BARS=1` sets the constant patched here when huggingface_hub is imported."""
    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
    write_clouds(tmp_path / "clouds")
    command = ["index", str(tmp_path / "clouds"), "--model", str(tiny_clip_dir), "--output"]
    assert main([*command, str(tmp_path / "shown")]) == 0
    assert "Indexing" in capsys.readouterr().err
    monkeypatch.setattr(hub_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", True)
    assert main([*command, str(tmp_path / "hidden")]) == 0
    assert "Indexing" not in capsys.readouterr().err


def test_push_revision_commit_message_and_create_pr(local_hub, tiny_clip_dir, tmp_path, capsys):
    api = HfApi()
    api.create_repo("openai-tiny/clip")
    api.upload_folder(repo_id="openai-tiny/clip", folder_path=str(tiny_clip_dir))
    model = pointclip_hf.PointCLIPModel.from_pretrained("openai-tiny/clip")
    model.save_pretrained(tmp_path / "model")
    assert main(["push", str(tmp_path / "model"), "user/pushed", "--revision", "dev", "--commit-message",
                 "first upload"]) == 0  # fmt: skip
    assert "pushed" in capsys.readouterr().out
    assert api.list_repo_commits("user/pushed", revision="dev")[0].title == "first upload"
    assert main(["push", str(tmp_path / "model"), "user/pushed", "--create-pr"]) == 1  # the local Hub has no PRs
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith("pointclip push: error: ") and "POST /api/models/user/pushed/discussions" in last_line
