"""
Class-folder trees of point-cloud or mesh files (any of `pointclip_hf.io.SUPPORTED_EXTENSIONS`), read
with `pointclip_hf.io.load_point_cloud` (meshes are sampled to points there):

    root/<split>/<class_name>/*.ply      (used when root/<split> exists)
    root/<class_name>/<split>/*.off      (the official ModelNet40 zip layout)
    root/<class_name>/*.npy              (no splits: the whole tree, whatever `split` says)

Class names are the sorted class folder names, taken over all splits so that ids agree between splits (or the
given `class_names`, which must include every folder name). Besides the schema's `points` and `label`, a `path`
column names each cloud's file, so that predictions and indexes can say which file a row is. Clouds are stored in
float32; one that float32 cannot resolve where it lies (a georeferenced scan, which the reader returns in float64) is
stored centred on its mean.
"""

import re
import warnings
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, Value

from ..io import SUPPORTED_EXTENSIONS, load_point_cloud
from ..model.feature_extraction_pointclip import check_point_clouds
from ..model.prompts import check_labels
from .schema import point_features

_SPLIT_DIR_NAMES = ("train", "test", "val", "validation", "valid", "eval")


def natural_key(path: Path) -> list:
    """Sort key of a file name with its digit runs as numbers: `part2` before `part10`."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def load_folder_tree(root: Path, split: str, class_names: list[str] | None, num_points: int | None) -> Dataset:
    """
    Read one split of a class-folder tree.

    Args:
        root (`Path`):
            The tree's root folder.
        split (`str`):
            The split to read; a tree without split folders is returned whole (with a warning unless `"train"`).
        class_names (`list[str]`, *optional*):
            The class names in label-id order; default: the sorted class folder names of all splits.
        num_points (`int`, *optional*):
            Keep only the first `num_points` points of each cloud.

    Returns:
        `datasets.Dataset`: with the schema of `pointclip_hf.data.point_features`, plus `path` (the file of each row).
    """
    found, files_of, layout = _tree_layout(root, split)
    if not any(files_of.values()):
        raise ValueError(
            f"{str(root)!r} is not a known dataset name, Hub repo or folder layout: no point-cloud files found "
            f"in {layout} (extensions: {', '.join(SUPPORTED_EXTENSIONS)})"
        )
    if class_names is not None:
        missing = [c for c in found if c not in class_names]
        if missing:
            raise ValueError(f"class folders {missing} in {str(root)!r} are not in class_names {class_names}")
    names = check_labels(class_names if class_names is not None else found)
    index = {name: i for i, name in enumerate(names)}
    clouds, labels, paths = [], [], []
    for name in found:
        for file in files_of[name]:
            clouds.append(_read_cloud(file, num_points, row=len(clouds)))
            labels.append(index[name])
            paths.append(str(file))
    features = point_features(names)
    features["path"] = Value("string")
    rows = {"points": clouds, "label": np.asarray(labels, dtype=np.int64), "path": paths}
    return Dataset.from_dict(rows, features=features, split=split)


def _tree_layout(root: Path, split: str) -> tuple[list[str], dict[str, list[Path]], str]:
    """`(class names found, the files of each class in this split, the layout as written in messages)`."""
    top = _subdirs(root)
    split_dirs = [d for d in top if d.name.lower() in _SPLIT_DIR_NAMES]
    inner_splits = sorted({s.name for c in top for s in _subdirs(c) if s.name.lower() in _SPLIT_DIR_NAMES})
    available = [d.name for d in split_dirs] or inner_splits
    if available and split not in available and not (root / split).is_dir():
        raise ValueError(f"unknown split {split!r} for the folder {str(root)!r}; available splits: {available}")
    if (root / split).is_dir() or split_dirs:
        return _split_first_layout(root, split, split_dirs)
    found = [c.name for c in top]
    if inner_splits:
        return found, {c: _cloud_files(root / c / split) for c in found}, f"{str(root)!r}/<class>/{split}/"
    if split != "train":
        warnings.warn(
            f"the folder {str(root)!r} has no split subfolders; returning all of it for split {split!r}",
            UserWarning,
            stacklevel=5,  # the caller of load_point_cloud_dataset
        )
    return found, {c: _cloud_files(root / c) for c in found}, f"{str(root)!r}/<class>/"


def _split_first_layout(root: Path, split: str, split_dirs: list[Path]):
    """`root/<split>/<class>/files`; the class names come from every split folder."""
    all_split_dirs = {d.name: d for d in split_dirs}
    all_split_dirs[split] = root / split
    found = sorted({c.name for d in all_split_dirs.values() for c in _subdirs(d)})
    return found, {c: _cloud_files(root / split / c) for c in found}, f"{str(root / split)!r}/<class>/"


def _read_cloud(file: Path, num_points: int | None, row: int) -> np.ndarray:
    points = load_point_cloud(file)
    xyz = np.ascontiguousarray(points[:num_points, :3] if num_points else points[:, :3])
    check_point_clouds(torch.from_numpy(xyz)[None], normalize=False, names=[f"row {row} ({str(file)!r})"])
    if xyz.dtype == np.float64:  # far from the origin for its size (georeferenced): float32 would blur it uncentred
        xyz = xyz - xyz.mean(axis=0)
    return xyz.astype(np.float32)


def _subdirs(path: Path) -> list[Path]:
    """The sub-folders of `path`, without hidden ones and the `__MACOSX` folder macOS zips add."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def _cloud_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(
        (
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_EXTENSIONS
        ),
        key=natural_key,
    )
