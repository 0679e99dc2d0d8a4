"""
Hub datasets, and local folders read the same way: a short name from `HUB_DATASETS` (`"modelnet40"`,
`"scanobjectnn"`) or any dataset repo id, loaded with `datasets.load_dataset(repo_id, split=split, **load_kwargs)`; a
local folder that `load_dataset` reads (parquet / arrow / json(l) data files, or a `README.md` with a YAML header); or
a folder written by `Dataset.save_to_disk` (read with `load_from_disk`). Their columns are mapped to the schema:

- points: `points_column` if given, else the first of `POINTS_COLUMN_CANDIDATES` that exists. Each row must be an
  `[N, C]` array with `C >= 3`; only x, y, z are kept.
- label: `label_column` if given, else the first of `LABEL_COLUMN_CANDIDATES`. It may be a `ClassLabel` (its names
  are kept, or replaced by `class_names` of the same length), integers (names from `class_names`, else the ModelNet40
  / ScanObjectNN names for those two datasets (short name or repo id), else `"0", "1", ...`), or strings (mapped
  through `class_names`, else through the known class list for the two short names, else through the sorted set of
  strings found in *all* splits of the dataset, so that label ids agree between train and test).
"""

import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import torch
from datasets import ClassLabel, Dataset

from ..io.errors import check_rules
from ..model.feature_extraction_pointclip import check_point_clouds
from .schema import MODELNET40_CLASSES, SCANOBJECTNN_CLASSES, point_features, resolve_class_names

HUB_DATASETS: dict[str, str] = {"modelnet40": "jxie/modelnet40", "scanobjectnn": "jxie/scanobjectnn"}
POINTS_COLUMN_CANDIDATES: tuple[str, ...] = ("points", "pointcloud", "point_cloud", "xyz", "data", "pos", "inputs")
LABEL_COLUMN_CANDIDATES: tuple[str, ...] = ("label", "labels", "category", "class", "target", "y")

_KNOWN_CLASSES: dict[str, tuple[str, ...]] = {"modelnet40": MODELNET40_CLASSES, "scanobjectnn": SCANOBJECTNN_CLASSES}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_MAP_BATCH_SIZE = 256


def load_hub_dataset(
    name: str, path_like: bool, split: str, *, points_column, label_column, class_names, num_points, load_kwargs
) -> Dataset:
    """
    Load a split of a Hub dataset and map it to the schema.

    Args:
        name (`str`):
            A short name from `HUB_DATASETS` or a repo id.
        path_like (`bool`):
            Whether the caller gave an `os.PathLike` (then `name` is taken as a missing folder, not a repo id).
        split (`str`):
            The split, `datasets` slicing such as `"train[:10%]"` included.
        points_column (`str`, *optional*), label_column (`str`, *optional*):
            The columns to use; default: auto-detected.
        class_names (`list[str]`, *optional*):
            The class names in label-id order, overriding what the dataset says.
        num_points (`int`, *optional*):
            Keep only the first `num_points` points of each cloud.
        load_kwargs (`dict`):
            Passed to `datasets.load_dataset`.
    """
    repo_id, short_name = _repo_of(name, path_like)
    dataset = _load_hub(repo_id, split, load_kwargs)
    return _to_point_dataset(
        dataset, split, source=repo_id, short_name=short_name, points_column=points_column,
        label_column=label_column, class_names=class_names, num_points=num_points,
        all_splits=lambda: _all_hub_splits(repo_id, load_kwargs),
    )  # fmt: skip


def load_hub_folder(
    path: Path, saved: bool, split: str, *, points_column, label_column, class_names, num_points, load_kwargs
) -> Dataset:
    """
    Load a split of a local folder that `load_dataset` reads, or of a `save_to_disk` folder (`saved=True`, then
    without `load_kwargs`: the caller refuses them), and map it to the schema. The other arguments are those of
    [`load_hub_dataset`].
    """
    source = str(path)
    dataset = _load_saved(path, split) if saved else _load_hub(source, split, load_kwargs)
    return _to_point_dataset(
        dataset, split, source=source, short_name=None, points_column=points_column,
        label_column=label_column, class_names=class_names, num_points=num_points,
        all_splits=lambda: datasets.load_from_disk(source) if saved else _all_hub_splits(source, load_kwargs),
    )  # fmt: skip


def _repo_of(name: str, path_like: bool) -> tuple[str, str | None]:
    """`(repo id, short name or None)` of a dataset name; raise when `name` is neither a known name nor a repo id."""
    by_repo = {repo: short for short, repo in HUB_DATASETS.items()}
    short_name = name.lower() if name.lower() in HUB_DATASETS else by_repo.get(name)
    looks_like_path = path_like or name.startswith((".", "/", "~", "\\")) or os.sep in name.replace("/", "")
    if short_name is None and (looks_like_path or not _REPO_ID.match(name) or name.count("/") > 1):
        raise ValueError(
            f"{name!r} is not a known dataset name, Hub repo or folder (no such folder exists; "
            f"known names: {', '.join(HUB_DATASETS)})"
        )
    return (HUB_DATASETS[short_name] if short_name else name), short_name


def _load_hub(repo_id: str, split: str, load_kwargs: dict) -> Dataset:
    """`load_dataset(repo_id, split=split, **load_kwargs)` (`split` cannot be in `load_kwargs`: Python refuses a
    second value for the argument of [`load_point_cloud_dataset`]); its errors for a bad split or a missing repo
    (DatasetNotFoundError is a FileNotFoundError; offline, a missing repo is a ConnectionError) are named as such."""
    try:
        dataset = datasets.load_dataset(repo_id, split=split, **load_kwargs)
    except (ValueError, FileNotFoundError, ConnectionError) as exc:
        if isinstance(exc, ValueError) and "Unknown split" not in str(exc) and "Bad split" not in str(exc):
            problem = f"dataset {repo_id!r} cannot be loaded"
        elif isinstance(exc, ValueError):
            problem = f"unknown split {split!r} for dataset {repo_id!r}"
        else:
            problem = (f"{repo_id!r} is not a known dataset name, Hub repo or folder (or the Hub cannot be reached "
                       "and it is not cached)")  # fmt: skip
        raise ValueError(f"{problem}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(dataset, Dataset):
        raise TypeError(
            f"load_dataset({repo_id!r}, split={split!r}) returned a {type(dataset).__name__}; a map-style "
            "Dataset is needed (streaming is not supported)"
        )
    return dataset


def _all_hub_splits(repo_id: str, load_kwargs: dict):
    return datasets.load_dataset(repo_id, **load_kwargs)


def _load_saved(path: Path, split: str) -> Dataset:
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"unknown split {split!r} in {str(path)!r}; available splits: {list(loaded)}")
        return loaded[split]
    return loaded


def _to_point_dataset(
    dataset, split, *, source, short_name, points_column, label_column, class_names, num_points, all_splits
) -> Dataset:
    """Map a Hub-style dataset's columns to the `{points, label}` schema."""
    pcol = _pick_column(dataset, points_column, POINTS_COLUMN_CANDIDATES, "points", source)
    lcol = _pick_column(dataset, label_column, LABEL_COLUMN_CANDIDATES, "label", source)
    check_rules([
        (len(dataset) > 0, f"split {split!r} of dataset {source!r} is empty (0 rows)"),
        (pcol != lcol, f"points and label columns are the same column {pcol!r}"),
    ], error=ValueError)  # fmt: skip
    known = _KNOWN_CLASSES.get(short_name) if short_name else None
    names, string_ids = _label_names(dataset, lcol, source, class_names, known, all_splits)
    return _convert(dataset, pcol, lcol, names, string_ids, num_points, source)


def _pick_column(dataset: Dataset, explicit, candidates, what: str, source: str) -> str:
    """`explicit` if it is a column of `dataset`, else (when not given) the first of `candidates` that is."""
    columns = dataset.column_names
    found = next((name for name in ([explicit] if explicit is not None else candidates) if name in columns), None)
    if found is None:
        raise ValueError(
            f"{what} column {explicit!r} is not in dataset {source!r}; columns found: {columns}"
            if explicit is not None
            else f"dataset {source!r} has no usable {what} column: tried {list(candidates)}, columns found: "
            f"{columns}; pass {what}_column="
        )
    return found


def _label_names(
    dataset, column: str, source: str, class_names, known, all_splits: Callable
) -> tuple[list[str], dict[str, int] | None]:
    """`(class names, string label -> id for a string column, else None)` of the label column."""
    feature = dataset.features[column]
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
        if class_names is not None and len(class_names) != len(names):
            raise ValueError(
                f"class_names has {len(class_names)} names but the ClassLabel column {column!r} has "
                f"{len(names)}: {names}"
            )
        return (class_names if class_names is not None else names), None
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        names = _string_label_names(dataset, column, source, class_names, known, all_splits)
        return names, {name: i for i, name in enumerate(names)}
    if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        return _integer_label_names(dataset, column, source, class_names, known, all_splits), None
    raise ValueError(
        f"label column {column!r} of dataset {source!r} is {feature!r}; expected a ClassLabel, integers or strings"
    )


def _string_label_names(dataset, column: str, source: str, class_names, known, all_splits: Callable) -> list[str]:
    present = [label for label in dataset.unique(column) if label is not None]  # a None is refused with its row
    if class_names is not None:
        names = class_names
    elif known is not None and set(present) <= set(known):
        names = list(known)
    else:
        names = sorted(set(present) | _labels_in_other_splits(all_splits, column, str))
    unknown = sorted(set(present) - set(names))
    if unknown:
        raise ValueError(f"label column {column!r} has labels not in class_names: {unknown}")
    return names


def _integer_label_names(dataset, column: str, source: str, class_names, known, all_splits: Callable) -> list[str]:
    ints = np.asarray(dataset[column])
    if class_names is None and known is None:
        others = _labels_in_other_splits(all_splits, column, int)
        if others:
            ints = np.concatenate([ints, np.fromiter(others, dtype=np.int64)])
    return resolve_class_names(ints, class_names, known, f"label column {column!r} of dataset {source!r}")


def _labels_in_other_splits(all_splits: Callable, column: str, kind) -> set:
    """Label values over every split of the dataset (so ids agree between splits); empty if unavailable."""
    try:
        full = all_splits()
    except Exception as exc:  # a dataset loadable only split by split: fall back to this split
        warnings.warn(
            f"could not read the other splits to fix the label order ({type(exc).__name__}: {exc}); class ids "
            "come from this split only, pass class_names= to be sure they agree between splits",
            UserWarning,
            stacklevel=8,  # the caller of load_point_cloud_dataset
        )
        return set()
    if full is None or not isinstance(full, datasets.DatasetDict):
        return set()
    values = set()
    for part in full.values():
        if column in part.column_names:
            values.update(kind(v) for v in part.unique(column) if v is not None)
    return values


def _convert(dataset, pcol: str, lcol: str, names: list[str], string_ids, num_points, source: str) -> Dataset:
    """Rewrite the rows as `points` of shape `(points, 3)` float32 and integer `label`s, checked."""
    num_classes = len(names)
    where = f"points column {pcol!r} of dataset {source!r}"

    def convert(batch, indices):
        clouds = [_row_to_xyz(cloud, row, where, num_points) for row, cloud in zip(indices, batch[pcol])]
        raw = batch[lcol]
        if string_ids is not None:
            labels = np.array([string_ids.get(s, -1) for s in raw], dtype=np.int64)
        else:
            labels = np.asarray(raw, dtype=np.int64)
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"row {indices[first]} of label column {lcol!r} has label {raw[first]!r}, "
                f"not a class id in [0, {num_classes})"
            )
        return {"points": clouds, "label": labels}

    converted = (
        dataset.select_columns([pcol, lcol])
        .with_format("numpy")
        .map(
            convert,
            batched=True,
            batch_size=_MAP_BATCH_SIZE,
            with_indices=True,
            remove_columns=[pcol, lcol],
            features=point_features(names),
            desc="Converting point clouds",
        )
    )
    return converted.with_format(None)


def _row_to_xyz(cloud, row: int, where: str, num_points: int | None) -> np.ndarray:
    """The `x, y, z` of one row as float32 `[N, 3]`; the cloud rule of the processor
    ([`check_point_clouds`]) refuses an empty one or non-finite coordinates."""
    array = np.asarray(cloud) if cloud is not None else np.zeros(0)
    if cloud is None or array.dtype.kind not in "iuf" or array.ndim != 2 or array.shape[1] < 3:
        raise ValueError(f"row {row} of {where} {_row_problem(cloud, array)}")
    xyz = np.ascontiguousarray(array[:num_points, :3] if num_points else array[:, :3], dtype=np.float32)
    check_point_clouds(torch.from_numpy(xyz)[None], normalize=False, names=[f"row {row} of {where}"])
    return xyz


def _row_problem(cloud, array: np.ndarray) -> str:
    if cloud is None:
        return "is missing (None)"
    if array.dtype == object:
        return "is ragged: its points do not all have the same number of coordinates (each point needs x, y, z)"
    if array.dtype.kind not in "iuf":
        return f"has non-numeric dtype {array.dtype}"
    return f"has shape {array.shape}; expected [N, C] points with C >= 3 (x, y, z)"
