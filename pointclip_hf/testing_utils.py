"""Helpers of the tests and the benchmarks, as `transformers.testing_utils`: a tiny random CLIP and a merge-free
byte-level CLIP tokenizer built locally (never downloaded), synthetic shapes, and shapes that people made or scanned,
from packages of the `test` extra, read offline:

- `pyvista_mesh_path(name)`: pyvista's example meshes shipped inside the package (`airplane`, `ant`, `nut`, as
  `.ply`), located without importing pyvista (and VTK). The airplane is stored z up.
- `run_without_the_package(script, *args, folder=..., environment=...)`: a script's last line of JSON output, from a
  fresh `python -I` process in which `pointclip_hf` cannot be imported (remote code and Hub-only use).
- `motorcycle_scan()`: a real partial scan, back-projected from the Middlebury 2014 *Motorcycle* stereo pair's
  ground-truth disparity that scikit-image ships (`skimage.data.stereo_motorcycle`), in camera coordinates
  (millimetres; x right, y down, z forward: up is -y), cut to the motorcycle.

A test calls `pytest.importorskip` before the real shapes.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

TINY_EMBED_DIM = 16
TINY_IMAGE_SIZE = 32
SHAPE_CLASSES = ["cube", "sphere", "disc", "line"]


def byte_level_alphabet() -> list[str]:
    """The 256 printable characters GPT-2/CLIP byte-level BPE uses for the bytes 0..255."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def byte_level_vocab() -> dict[str, int]:
    """A merge-free CLIP BPE vocabulary: every byte alone and word-final, then <|startoftext|> 512 and
    <|endoftext|> 513."""
    alphabet = byte_level_alphabet()
    vocab = {char: index for index, char in enumerate(alphabet)}
    vocab.update({char + "</w>": 256 + index for index, char in enumerate(alphabet)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    return vocab


def build_tiny_tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer(vocab=byte_level_vocab(), merges=[])


CLIP_SIZES = {  # (width, attention heads, MLP width) of the text and vision towers, and the joint width
    "tiny": ((32, 2, 37), (32, 2, 37), TINY_EMBED_DIM),
    "vit-b": ((512, 8, 2048), (768, 12, 3072), 512),
}


def random_clip_config(
    size: str = "tiny",
    num_layers: int = 2,
    image_size: int = TINY_IMAGE_SIZE,
    patch_size: int = 8,
    vocab_size: int = 514,
    **kwargs,
) -> CLIPConfig:
    r"""
    The config of a CLIP to build with random weights, read by the byte-level tokenizer of `build_tiny_tokenizer`.

    Args:
        size (`str`, *optional*, defaults to `"tiny"`):
            `"tiny"` (width 32) or `"vit-b"` (ViT-B's widths: 512 text, 768 vision, 512 joint).
        num_layers (`int`, *optional*, defaults to 2):
            Layers of each tower.
        image_size (`int`, *optional*, defaults to `TINY_IMAGE_SIZE`), patch_size (`int`, *optional*, defaults to 8):
            The vision tower's input.
        vocab_size (`int`, *optional*, defaults to 514):
            Text vocabulary (514: the tokenizer's bytes, start and end; 49,408: CLIP's).
        kwargs:
            More `CLIPConfig` fields (`logit_scale_init_value` defaults to ln(100), OpenAI's value).
    """
    (text_width, text_heads, text_mlp), (vision_width, vision_heads, vision_mlp), projection_dim = CLIP_SIZES[size]
    kwargs.setdefault("logit_scale_init_value", float(np.log(100.0)))
    text_config = dict(
        vocab_size=vocab_size,
        hidden_size=text_width,
        intermediate_size=text_mlp,
        num_hidden_layers=num_layers,
        num_attention_heads=text_heads,
        max_position_embeddings=77,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )
    vision_config = dict(
        hidden_size=vision_width,
        intermediate_size=vision_mlp,
        num_hidden_layers=num_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
    )
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim, **kwargs)


def build_tiny_clip(seed: int = 0) -> CLIPModel:
    """The tiny random CLIP of the tests (`random_clip_config()`), its weights drawn with `seed`."""
    config = random_clip_config()
    torch.manual_seed(seed)
    return CLIPModel(config).eval()


def synthetic_cloud(kind: int, rng: np.random.Generator, num_points: int = 256) -> np.ndarray:
    """Cube surface, sphere surface, flat disc or line segment, with a little noise."""
    n = num_points
    if kind == 0:
        points = rng.uniform(-1, 1, (n, 3))
        face_axis, face_side = rng.integers(0, 3, n), np.sign(rng.uniform(-1, 1, n))
        points[np.arange(n), face_axis] = face_side
    elif kind == 1:
        points = rng.normal(size=(n, 3))
        points /= np.linalg.norm(points, axis=1, keepdims=True)
    elif kind == 2:
        radius, angle = np.sqrt(rng.uniform(0, 1, n)), rng.uniform(0, 2 * np.pi, n)
        points = np.stack([radius * np.cos(angle), np.zeros(n), radius * np.sin(angle)], axis=1)
    else:
        t = rng.uniform(-1, 1, n)
        points = np.stack([t, 0.3 * t, 0.5 * t], axis=1)
    return (points + rng.normal(scale=0.01, size=points.shape)).astype(np.float32)


# The calibration of the down-sampled pair, from `skimage.data.stereo_motorcycle`'s documentation.
MOTORCYCLE_FOCAL_PX = 994.978
MOTORCYCLE_PRINCIPAL_POINT_PX = (311.193, 254.877)
MOTORCYCLE_PRINCIPAL_POINT_DX_PX = 31.086
MOTORCYCLE_BASELINE_MM = 193.001
# The motorcycle stands nearer than the bench and shelves behind it, on a floor fitted in the bottom image rows.
_MOTORCYCLE_MAX_DEPTH_MM = 3000.0
_FLOOR_ROWS_FROM = 470
_ABOVE_FLOOR_MM = 15.0


def pyvista_mesh_path(name: str) -> Path:
    """The path of pyvista's shipped example mesh `name` (`"airplane"`, `"ant"`, `"nut"`); pyvista must be installed."""
    spec = importlib.util.find_spec("pyvista")
    if spec is None:
        raise ImportError("pyvista is not installed: pip install -e '.[test]'")
    return Path(spec.submodule_search_locations[0]) / "examples" / f"{name}.ply"


def motorcycle_scan() -> np.ndarray:
    """The motorcycle, `[N, 3]` float32 points in the left camera's frame (mm; up is -y), about 111,000 of them, in
    the image's row-major (scan-line) order."""
    from skimage.data import stereo_motorcycle

    _, _, disparity = stereo_motorcycle()
    rows, columns = np.nonzero(np.isfinite(disparity))
    depth = MOTORCYCLE_FOCAL_PX * MOTORCYCLE_BASELINE_MM / (disparity[rows, columns] + MOTORCYCLE_PRINCIPAL_POINT_DX_PX)
    centre_x, centre_y = MOTORCYCLE_PRINCIPAL_POINT_PX
    points = np.stack(
        [(columns - centre_x) * depth / MOTORCYCLE_FOCAL_PX, (rows - centre_y) * depth / MOTORCYCLE_FOCAL_PX, depth],
        axis=1,
    )
    floor = rows >= _FLOOR_ROWS_FROM
    design = np.c_[points[:, 0], points[:, 2], np.ones(len(points))]
    floor_plane, *_ = np.linalg.lstsq(design[floor], points[floor, 1], rcond=None)
    height_above_floor = design @ floor_plane - points[:, 1]
    keep = (depth < _MOTORCYCLE_MAX_DEPTH_MM) & (height_above_floor > _ABOVE_FLOOR_MM)
    return points[keep].astype(np.float32)


def sorted_along(points: np.ndarray, column: int) -> np.ndarray:
    """`points` stored in increasing order of one coordinate (a height or a scan direction, as scanners and LAS tiles
    store them), ties kept in their order."""
    return points[np.argsort(points[:, column], kind="stable")]


def run_without_the_package(script: str, *args: str, folder: Path, environment: dict[str, str]):
    """
    Run `script` with `args` in a fresh `python -I` process, in `folder`, with only `environment` (plus a plain `PATH`
    and `HOME=folder`), standard input closed and `pointclip_hf` made unimportable; return its last line of output,
    read as JSON. A failing script fails the calling test with the end of its standard error.
    """
    script = "import sys\nsys.modules['pointclip_hf'] = None\n" + script
    environment = {**environment, "PATH": "/usr/bin:/bin", "HOME": str(folder)}
    done = subprocess.run([sys.executable, "-I", "-c", script, *args], capture_output=True, text=True, env=environment,
                          stdin=subprocess.DEVNULL, cwd=folder, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
