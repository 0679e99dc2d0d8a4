"""ShapeNetPart in its common h5 form (`shapenet_part_seg_hdf5_data/hdf5_data/*{split}*.h5`): `data` `[S, 2048, 3]`,
`label` `[S, 1]` (the category, 16) and `pid` `[S, 2048]` (the global part id, 50), as a `datasets.Dataset`.

    {"points": Array2D(shape=(None, 3), dtype="float32"),
     "category": ClassLabel(names=SHAPENET_PART_CATEGORIES),
     "part_ids": List(Value("int64"))}                        # global part id per point
"""

from pathlib import Path

import datasets
import numpy as np
from datasets import Array2D, ClassLabel, Dataset, Features, Value

from ..data.folder_tree import natural_key
from ..data.h5_folder import _import_h5py
from .presets import SHAPENET_PART_CATEGORIES, SHAPENET_PART_NAMES, part_preset

NUM_PARTS = sum(len(names) for names in SHAPENET_PART_NAMES.values())


def shapenet_part_features() -> Features:
    """The schema of [`load_shapenet_part`]."""
    return Features(
        {
            "points": Array2D(shape=(None, 3), dtype="float32"),
            "category": ClassLabel(names=list(SHAPENET_PART_CATEGORIES)),
            "part_ids": datasets.List(Value("int64")),
        }
    )


def load_shapenet_part(root, split: str = "test", categories=None, num_points: int | None = None) -> Dataset:
    r"""
    Read one split of ShapeNetPart h5 files.

    Args:
        root (`str` or `Path`):
            The folder holding the `*{split}*.h5` files (or its `hdf5_data` subfolder).
        split (`str`, *optional*, defaults to `"test"`):
            `"train"`, `"val"` or `"test"`: the files whose names contain it.
        categories (`list[str]`, *optional*):
            Keep only these categories.
        num_points (`int`, *optional*):
            Keep the first `num_points` points of each shape (the reference keeps 2048).

    Returns:
        `datasets.Dataset` with `points`, `category` and `part_ids`.
    """
    files = _split_files(Path(root), split)
    wanted = _category_ids(categories)
    h5py = _import_h5py()
    parts = [_read_file(h5py, file, wanted, num_points) for file in files]
    parts = [part for part in parts if len(part)]
    if not parts:
        raise ValueError(f"The {split!r} split of {str(root)!r} holds no shape of the categories {categories}.")
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _split_files(root: Path, split: str) -> list[Path]:
    folder = root / "hdf5_data" if (root / "hdf5_data").is_dir() else root
    files = sorted(folder.glob(f"*{split}*.h5"), key=lambda path: natural_key(path))
    if not files:
        where = "" if root.is_dir() else " (the ShapeNetPart folder does not exist)"
        raise OSError(f"No *{split}*.h5 files in {str(folder)!r}{where}.")
    return files


def _category_ids(categories) -> list[int] | None:
    if categories is None:
        return None
    return [SHAPENET_PART_CATEGORIES.index(part_preset(name).category) for name in categories]


def _read_file(h5py, file: Path, wanted: list[int] | None, num_points: int | None) -> Dataset:
    with h5py.File(file, "r") as handle:
        missing = [key for key in ("data", "label", "pid") if key not in handle]
        if not missing:
            points = np.asarray(handle["data"][:, :num_points, :3], dtype=np.float32)
            category = np.asarray(handle["label"], dtype=np.int64).reshape(-1)
            part_ids = np.asarray(handle["pid"][:, :num_points], dtype=np.int64)
    problem = f"lacks the datasets {missing}" if missing else _arrays_problem(points, category, part_ids)
    if problem is not None:
        raise ValueError(f"ShapeNetPart file {file.name!r}: {problem}.")
    keep = np.isin(category, wanted) if wanted is not None else np.ones(len(category), dtype=bool)
    rows = {"points": list(points[keep]), "category": category[keep], "part_ids": list(part_ids[keep])}
    return Dataset.from_dict(rows, features=shapenet_part_features())


def _arrays_problem(points: np.ndarray, category: np.ndarray, part_ids: np.ndarray) -> str | None:
    """What is wrong with the arrays of a ShapeNetPart file (`None`: nothing)."""
    if not (len(points) == len(category) == len(part_ids)) or part_ids.shape[1] != points.shape[1]:
        return "data, label and pid disagree in their shapes"
    if category.min(initial=0) < 0 or category.max(initial=0) >= len(SHAPENET_PART_CATEGORIES):
        return f"category labels outside [0, {len(SHAPENET_PART_CATEGORIES)})"
    if part_ids.min(initial=0) < 0 or part_ids.max(initial=0) >= NUM_PARTS:
        return f"part ids outside [0, {NUM_PARTS})"
    if not np.isfinite(points).all():
        return "points contain NaN or infinite values"
    return None
