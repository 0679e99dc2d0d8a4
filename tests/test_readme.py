"""Every code block of README.md runs as a reader would run it, in document order, from a folder that holds the
repository's `examples/` and the reader's own files the README names (`chair.ply`, `my_clouds/`, ...).

What an HTML comment just above a block says, `<!-- readme-test: ... -->`:

- `hub`: the block downloads from the Hugging Face Hub. It runs against the local Hub server (`hub_server.py`), which
  serves the tiny random CLIP as `openai/clip-vit-base-patch16`, a tiny stand-in for `jxie/modelnet40` (two classes)
  and whatever earlier blocks pushed. Every other block runs offline with an empty Hub cache, so a block that needs
  the Hub without saying so fails.
- `continues`: the block continues the previous Python block (its names are defined); otherwise it starts afresh.
- `demo`: the block talks to the demo at http://127.0.0.1:7860/; the test serves the demo on a free port instead.
- `synopsis`: usage lines with placeholders; every command, option and choice they name must exist.
- `not run (reason)`: the test suite's own command, or a download.

In bash blocks, `pointclip ...` commands run (in this process) and must exit 0; `pip install ...` commands are not run
(nothing is installed by tests); `pointclip demo` builds the app and hands `launch` its host and port, not serving
(`test_demo.py` serves and drives it). The only edits made to the README's code are `SUBSTITUTIONS`.
"""

import argparse
import hashlib
import json
import re
import shlex
import socket
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_cloud
from datasets import Array2D, ClassLabel, Dataset, Features
from hub_server import hub_offline, start_local_hub
from huggingface_hub import HfApi, constants

ROOT = Path(__file__).resolve().parents[1]
CLIP_ID = "openai/clip-vit-base-patch16"
MODELNET_CLASSES = ["airplane", "chair"]
SUBSTITUTIONS = {  # fewer epochs: the README shows the full recipe
    "TrainingConfig()": "TrainingConfig(epochs=2)",
    "num_train_epochs=250": "num_train_epochs=2",
}
MARKER = re.compile(r"^<!-- readme-test: (.+) -->$")


@dataclass
class Block:
    path: Path
    line: int
    language: str
    code: str
    markers: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.path.name}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with the markers of the comment line just above each."""
    blocks, lines, index = [], path.read_text(encoding="utf-8").splitlines(), 0
    while index < len(lines):
        if not lines[index].startswith("```"):
            index += 1
            continue
        end = lines.index("```", index + 1)
        above = next((line for line in reversed(lines[:index]) if line.strip()), "")
        marker = MARKER.match(above)
        markers = tuple(m.strip() for m in marker.group(1).split(",")) if marker else ()
        blocks.append(Block(path, index + 1, lines[index][3:].strip(), "\n".join(lines[index + 1 : end]), markers))
        index = end + 1
    return blocks


README_BLOCKS = [block for block in read_blocks(ROOT / "README.md") if block.language in ("python", "bash")]


def test_every_code_block_is_run_or_says_why_not():
    for path in (ROOT / "README.md", ROOT / "examples" / "README.md"):
        for block in read_blocks(path):
            assert block.language in ("python", "bash", ""), f"{block.name}: unknown block language {block.language!r}"
            if block.language and any(marker.startswith("not run") for marker in block.markers):
                assert re.fullmatch(r"not run \(.+\)", block.markers[0]), f"{block.name}: 'not run' needs a reason"
            if block.language and path != ROOT / "README.md":  # only README.md's blocks are run
                assert block.markers[:1] and block.markers[0].startswith("not run"), f"{block.name} is not run"


def test_the_readme_test_command_is_what_ci_runs():
    (block,) = [block for block in README_BLOCKS if "python -m pytest" in block.code]
    assert "not run (the test suite's own command; .ci/run runs it)" in block.markers
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    ci_commands = [[word for word in command if word != "-q"] for line in ci for command in shell_commands(line)]
    for command in shell_commands(block.code):
        assert [word for word in command if word != "-q"] in ci_commands, f"{' '.join(command)} is not in .ci/run"


def test_example_cloud_checksums():
    text = (ROOT / "examples" / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^([0-9a-f]{64})  (\w+\.npy)$", text, flags=re.MULTILINE)[::-1])
    assert sorted(listed.values()) == ["mug.npy", "table.npy", "teddy_bear.npy"]
    for digest, name in listed.items():
        assert hashlib.sha256((ROOT / "examples" / name).read_bytes()).hexdigest() == digest


# The reader's setting: a local Hub, a working folder with their files.


def modelnet_stand_in() -> dict[str, Dataset]:
    features = Features({"inputs": Array2D((None, 3), "float32"), "label": ClassLabel(names=MODELNET_CLASSES)})
    rng = np.random.default_rng(0)
    splits = {}
    for split, per_class in (("train", 20), ("test", 2)):
        labels = [label for label in range(len(MODELNET_CLASSES)) for _ in range(per_class)]
        clouds = [synthetic_cloud(label, rng, 256) for label in labels]
        splits[split] = Dataset.from_dict({"inputs": clouds, "label": labels}, features=features)
    return splits


def write_reader_files(folder: Path, modelnet: dict[str, Dataset]) -> None:
    """The files the README's blocks name as the reader's own."""
    import h5py
    from plyfile import PlyData, PlyElement

    from pointclip_hf import train_validation_split

    (folder / "examples").symlink_to(ROOT / "examples")
    table = np.load(ROOT / "examples" / "table.npy")
    for name in ("chair.ply", "query.ply"):
        vertices = np.rec.fromarrays(table.T, names="x,y,z")
        PlyData([PlyElement.describe(vertices, "vertex")]).write(str(folder / name))
    (folder / "my_clouds").mkdir()
    for name in ("mug.npy", "table.npy", "teddy_bear.npy"):
        (folder / "my_clouds" / name).write_bytes((ROOT / "examples" / name).read_bytes())
    shapenet = folder / "shapenet_part_seg_hdf5_data"
    shapenet.mkdir()
    with h5py.File(shapenet / "ply_data_test0.h5", "w") as handle:  # one chair (category 4): part segmentation is slow
        handle["data"] = table[None, :512]
        handle["label"] = np.array([[4]], dtype=np.uint8)
        handle["pid"] = np.where(table[None, :512, 1] > 0, 13, 14).astype(np.uint8)  # seat, leg
    library = {name: [f"a depth map of a {name}.", f"a 3D model of a {name}."] for name in MODELNET_CLASSES}
    (folder / "modelnet40_1000.json").write_text(json.dumps(library))
    _, validation = train_validation_split(modelnet["train"], 0.2, seed=2)  # what the few-shot block carves
    logits = np.random.default_rng(1).normal(size=(len(validation), len(MODELNET_CLASSES))).astype(np.float32)
    np.save(folder / "pointnet2_validation_logits.npy", logits)


@pytest.fixture(scope="module")
def reader(tmp_path_factory, tiny_clip_dir):
    """`(folder, hub)`: the working folder with the reader's files, and the local Hub they download from."""
    pytest.importorskip("h5py", reason="the README's part-segmentation data is an h5 folder (test extra)")
    base = tmp_path_factory.mktemp("readme")
    folder = base / "work"
    folder.mkdir()
    modelnet = modelnet_stand_in()
    write_reader_files(folder, modelnet)
    with start_local_hub(base / "hub") as hub:
        api = HfApi()
        api.create_repo(CLIP_ID)
        api.upload_folder(repo_id=CLIP_ID, folder_path=str(tiny_clip_dir))
        api.create_repo("jxie/modelnet40", repo_type="dataset")
        for split, dataset in modelnet.items():
            dataset.to_parquet(str(base / f"{split}.parquet"))
            api.upload_file(path_or_fileobj=str(base / f"{split}.parquet"), repo_id="jxie/modelnet40",
                            path_in_repo=f"data/{split}-00000-of-00001.parquet", repo_type="dataset")  # fmt: skip
        yield folder, hub


@pytest.fixture
def in_reader_folder(reader, monkeypatch):
    monkeypatch.chdir(reader[0])
    return reader


NAMESPACES: dict[str, dict] = {}


def run_python(block: Block, code: str, previous: str | None) -> None:
    namespace = dict(NAMESPACES[previous]) if "continues" in block.markers else {"__name__": "__readme__"}
    exec(compile(code, block.name, "exec"), namespace)  # noqa: S102 - the README's own code
    NAMESPACES[block.name] = namespace


def run_bash(block: Block, code: str, monkeypatch) -> None:
    from pointclip_hf.cli import main

    launched = []
    for line in code.replace("\\\n", " ").splitlines():
        for command in shell_commands(line):
            if command[:2] == ["pip", "install"]:
                continue
            assert command[0] == "pointclip", f"{block.name}: {command[0]!r} is not run by this test; mark the block"
            if command[1] == "demo":  # built, and handed to launch, which does not serve here
                monkeypatch.setattr("gradio.Blocks.launch", lambda demo, **kwargs: launched.append(kwargs))
            assert main(command[1:]) == 0, f"{block.name}: {' '.join(command)} failed"
            if command[1] == "demo":
                port = int(command[command.index("--port") + 1]) if "--port" in command else None
                assert launched.pop()["server_port"] == port


def shell_commands(line: str) -> list[list[str]]:
    """The commands of one shell line, split at `&&`, without its comment."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands = [[]]
    for token in lexer:
        if token == "&&":
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def served_demo_url(stack) -> str:
    """Serve the demo of the default checkpoint on a free port (its models loaded now, while the Hub is up)."""
    from pointclip_hf.demo import DemoModels, build_demo

    models = DemoModels(CLIP_ID)
    for projection in models.projections:
        models.get(projection)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = build_demo(models)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    stack.callback(demo.close)
    return url


def code_to_run(block: Block, demo_url: str | None) -> str:
    code = block.code
    substitutions = {**SUBSTITUTIONS, **({"http://127.0.0.1:7860/": demo_url} if demo_url else {})}
    for old, new in substitutions.items():
        if old in code:
            assert code.count(old) == 1, f"{block.name}: {old!r} appears more than once"
            code = code.replace(old, new)
    return code


def test_substitutions_are_all_used():
    code = "\n".join(block.code for block in README_BLOCKS)
    assert all(old in code for old in SUBSTITUTIONS)


@pytest.mark.parametrize("block", [b for b in README_BLOCKS if not b.markers or b.markers[0] != "synopsis"],
                         ids=lambda block: block.name)  # fmt: skip
def test_readme_block_runs(block, in_reader_folder, monkeypatch, tmp_path):
    if any(marker.startswith("not run") for marker in block.markers):
        pytest.skip(f"{block.name}: {block.markers[0]}")
    if "demo" in block.markers or "pointclip demo" in block.code:
        pytest.importorskip("gradio", reason='the demo extra is not installed (pip install -e ".[demo]")')
    previous = next((b.name for b in reversed(README_BLOCKS[: README_BLOCKS.index(block)]) if b.language == "python"),
                    None)  # fmt: skip
    with ExitStack() as stack:
        demo_url = served_demo_url(stack) if "demo" in block.markers else None
        if "hub" not in block.markers:  # offline, and nothing cached: a block needing the Hub must say so
            stack.enter_context(hub_offline())
            monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
        code = code_to_run(block, demo_url)
        if block.language == "python":
            run_python(block, code, previous)
        else:
            run_bash(block, code, monkeypatch)


SYNOPSIS_BLOCKS = [block for block in README_BLOCKS if "synopsis" in block.markers]


@pytest.mark.parametrize("block", SYNOPSIS_BLOCKS, ids=lambda block: block.name)
def test_synopsis_names_real_commands_options_and_choices(block):
    from pointclip_hf.cli import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction)).choices
    text = block.code.replace("\\\n", " ")
    usages = [usage for line in text.splitlines() for usage in re.split(r"\s{3,}(?=pointclip )", line.strip())]
    for usage in usages:
        words = usage.split()
        if words[0] != "pointclip":  # the continuation of the usage above, already joined
            continue
        name = next((word for word in words[1:] if not word.startswith("-")), None)
        command = commands.get(name, parser)
        nested = [action for action in command._actions if isinstance(action, argparse._SubParsersAction)]
        if nested and command is not parser:  # `pointclip cache build`: the options are the nested command's
            command = nested[0].choices[words[words.index(name) + 1]]
        actions = {option: action for action in command._actions for option in action.option_strings}
        actions.update({option: action for action in parser._actions for option in action.option_strings})
        for position, word in enumerate(words):
            option = word.strip("[]|").split("=")[0]
            if not option.startswith("-") or option == "-" or option == "...":
                continue
            assert option in actions, f"{block.name}: {name} has no option {option}"
            choices = actions[option].choices
            value = words[position + 1].strip("[]") if position + 1 < len(words) else ""
            if choices and value and not value.isupper():
                assert set(value.split("|")) <= set(choices), f"{block.name}: {option} {value} not in {choices}"
