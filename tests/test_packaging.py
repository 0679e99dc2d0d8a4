"""The package as a newcomer gets it: a built wheel (not the editable checkout) ships the example clouds, and the Space
in `examples/space/` installs from its own `requirements.txt` into a fresh virtual environment and builds its app.

Nothing is downloaded: the wheel is built with `--no-build-isolation --no-index`, and the fresh environment sees this
environment's installed distributions through a `.pth` file, so `pip install --no-index -r requirements.txt` succeeds
only when every requirement of the Space (the wheel's own and its `demo`, `las` and `pcd` extras) is satisfied."""

import json
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from huggingface_hub import SpaceCard

from pointclip_hf.io import SUPPORTED_EXTENSIONS

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "examples" / "space"
EXAMPLE_CLOUDS = ("mug.npy", "table.npy", "teddy_bear.npy")


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run without this checkout on PYTHONPATH (the installed wheel must be what is imported)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONNOUSERSITE="1", HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", **kwargs.pop("env", {}))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel .` builds from a copy of the checkout's package files."""
    source, dist = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "pointclip_hf", source / "pointclip_hf", ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(source),
         "-w", str(dist)])  # fmt: skip
    (built,) = dist.glob("pointclip_hf-*.whl")
    return built


def test_wheel_ships_the_example_clouds(wheel):
    with zipfile.ZipFile(wheel) as archive:
        for name in EXAMPLE_CLOUDS:
            shipped = archive.read(f"pointclip_hf/example_clouds/{name}")
            assert shipped == (ROOT / "examples" / name).read_bytes()  # examples/ links to the package's files
        assert "pointclip_hf/model_card_template.md" in archive.namelist()


def test_space_readme_lists_every_readable_format():
    listed = re.search(r"a mesh \(`([^`]+)`\)", (SPACE / "README.md").read_text(encoding="utf-8")).group(1).split()
    assert listed == list(SUPPORTED_EXTENSIONS)


def test_space_installs_from_its_requirements_and_builds(wheel, tiny_clip_dir, tmp_path):
    pytest.importorskip("gradio", reason='the demo extra is not installed (pip install -e ".[demo]")')
    space = tmp_path / "space"
    shutil.copytree(SPACE, space, ignore=shutil.ignore_patterns("*.whl"))
    shutil.copy(wheel, space)  # README step 1
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    (Path(purelib) / "_this_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-cache-dir", "-q", "-r",
         "requirements.txt"], cwd=space)  # fmt: skip

    card = SpaceCard.load(space / "README.md").data
    probe = f"""
import json, runpy, gradio, pointclip_hf
from pointclip_hf.demo import DemoModels, classify_file, example_files
app = runpy.run_path({card.app_file!r})
result = classify_file(DemoModels(app["MODEL"]), example_files()[0], "cup, table", "pointclip_v1")
apis = [fn.api_name for fn in app["demo"].fns.values()]
print(json.dumps({{"package": pointclip_hf.__file__, "examples": example_files(), "error": result.error,
                  "blocks": isinstance(app["demo"], gradio.Blocks), "apis": apis}}))
"""
    done = run([str(python), "-c", probe], cwd=space, env={"POINTCLIP_MODEL": str(tiny_clip_dir)})
    built = json.loads(done.stdout.strip().splitlines()[-1])
    assert built["package"].startswith(purelib)
    assert [Path(path).name for path in built["examples"]] == list(EXAMPLE_CLOUDS)
    assert all(path.startswith(purelib) for path in built["examples"])
    assert built["blocks"] and "classify" in built["apis"] and built["error"] is None
