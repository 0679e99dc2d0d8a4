"""The official projection code, loaded from a checkout outside this repository (never vendored here), for the speed
comparisons of `bench_projection.py` and `bench_segmentation.py`.

`root` holds the two official repositories, cloned side by side:

    git clone https://github.com/ZrrSkywalker/PointCLIP ROOT/PointCLIP
    git clone https://github.com/yangyangyang127/PointCLIP_V2 ROOT/PointCLIP_V2

(the golden fixtures came from PointCLIP@8656f2c and PointCLIP_V2@0b5aee8). The files are read as they are, with one
edit made in memory when they are loaded: every `.cuda()` is removed, so that they run on the CPU. Where
`torch_scatter` is not installed (it has no wheels for recent torch), V2's `from torch_scatter import scatter` gets a
stand-in for the one call it makes, `scatter(src, index, dim=1, out=grid, reduce="max")`: torch's
`out.scatter_reduce(dim, index, src, "amax")`, the same maxima. Part segmentation's CLIP input is `Extractor.mv_proj`
of `zeroshot_seg/main.py`, its source taken from the file (the rest of `main.py` needs CLIP and the datasets).

- `pointclip_v1`: `PointCLIP/trainers/mv_utils_zs.py`, `PCViews().get_img`;
- `pointclip_v1_fewshot`: `PointCLIP/trainers/mv_utils_fs.py`, `PCViews().get_img`;
- `pointclip_v2`: `PointCLIP_V2/zeroshot_cls/trainers/mv_utils_zs.py`, `Realistic_Projection().get_img`;
- `pointclip_v2_part_segmentation`: `PointCLIP_V2/zeroshot_seg/main.py`, `Extractor.mv_proj` over
  `realistic_projection.py`'s `Realistic_Projection("cpu").get_img`.
"""

import ast
import sys
import textwrap
import types
from pathlib import Path

import torch

FILES = {
    "pointclip_v1": "PointCLIP/trainers/mv_utils_zs.py",
    "pointclip_v1_fewshot": "PointCLIP/trainers/mv_utils_fs.py",
    "pointclip_v2": "PointCLIP_V2/zeroshot_cls/trainers/mv_utils_zs.py",
    "pointclip_v2_part_segmentation": "PointCLIP_V2/zeroshot_seg/realistic_projection.py",
}
PART_SEGMENTATION_MAIN = "PointCLIP_V2/zeroshot_seg/main.py"


def official_projections(root) -> dict:
    """`{style: function(points [B, N, 3]) -> the official output}` for the checkout at `root` (see the module
    docstring); raises `SystemExit` naming a missing file."""
    root = Path(root)
    missing = [path for path in (*FILES.values(), PART_SEGMENTATION_MAIN) if not (root / path).is_file()]
    if missing:
        raise SystemExit(f"--official {root}: missing {', '.join(missing)} (see benchmarks/official_projection.py).")
    modules = {style: _load(root / path, f"official_{style}") for style, path in FILES.items()}
    part_projection = modules["pointclip_v2_part_segmentation"].Realistic_Projection("cpu")
    mv_proj = _method_source(root / PART_SEGMENTATION_MAIN, "Extractor", "mv_proj")
    extractor = types.SimpleNamespace(get_img=part_projection.get_img)
    return {
        "pointclip_v1": modules["pointclip_v1"].PCViews().get_img,
        "pointclip_v1_fewshot": modules["pointclip_v1_fewshot"].PCViews().get_img,
        "pointclip_v2": modules["pointclip_v2"].Realistic_Projection().get_img,
        "pointclip_v2_part_segmentation": lambda points: mv_proj(extractor, points),
        "pointclip_v2_part_segmentation_depth": part_projection.get_img,
    }


def _load(path: Path, name: str) -> types.ModuleType:
    source = path.read_text().replace(".cuda()", "")
    module = types.ModuleType(name)
    module.__file__ = str(path)
    previous = sys.modules.get("torch_scatter")
    if previous is None and "torch_scatter" in source:
        sys.modules["torch_scatter"] = _torch_scatter_stand_in()
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    finally:
        if previous is None:
            sys.modules.pop("torch_scatter", None)
    return module


def _torch_scatter_stand_in() -> types.ModuleType:
    def scatter(src, index, dim=-1, out=None, reduce="sum"):
        if reduce != "max" or out is None:
            raise NotImplementedError("the stand-in covers the official V2 call only")
        return out.scatter_reduce(dim, index, src, "amax", include_self=True)

    module = types.ModuleType("torch_scatter")
    module.scatter = scatter
    return module


def _method_source(path: Path, class_name: str, method_name: str):
    """The function `class_name.method_name` defined in `path`, compiled on its own (with `torch` in scope)."""
    source = path.read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == method_name:
                    namespace = {"torch": torch}
                    function = textwrap.dedent(" " * item.col_offset + ast.get_source_segment(source, item))
                    exec(compile(function, str(path), "exec"), namespace)
                    return namespace[method_name]
    raise SystemExit(f"{path}: no {class_name}.{method_name}.")
