"""Point-cloud classification data sets as :class:`datasets.Dataset` objects.

Every loader returns the same schema (see :func:`point_features`)::

    {"points": Array2D(shape=(None, 3), dtype="float32"),   # one [N, 3] cloud per row, x y z only
     "label":  ClassLabel(names=[...])}                      # class names in label-id order

``Array2D((None, 3))`` allows clouds of different sizes; ``dataset.with_format("torch")`` gives an
``[N, 3]`` float32 tensor per row and ``[B, N, 3]`` per batch when the sizes match (a list of tensors
otherwise). Extra channels (normals, colours) are dropped and so are all other columns.

:func:`load_point_cloud_dataset` reads three kinds of ``source``:

1. **A Hub dataset** -- a short name from :data:`HUB_DATASETS` (``"modelnet40"``, ``"scanobjectnn"``) or
   any dataset repo id, loaded with ``datasets.load_dataset(repo_id, split=split, **load_kwargs)``. A local
   folder that ``load_dataset`` can read (parquet / arrow / json(l) data files, or a ``README.md`` with a
   YAML header) goes through exactly the same code, and so does a folder written by
   ``Dataset.save_to_disk`` (read with ``load_from_disk``). Columns are mapped to the schema:

   * points: ``points_column`` if given, else the first of :data:`POINTS_COLUMN_CANDIDATES`
     (``points``, ``pointcloud``, ``point_cloud``, ``xyz``, ``data``, ``pos``, ``inputs``) that exists.
     Each row must be an ``[N, C]`` array with ``C >= 3``; only x, y, z are kept.
   * label: ``label_column`` if given, else the first of :data:`LABEL_COLUMN_CANDIDATES`
     (``label``, ``labels``, ``category``, ``class``, ``target``, ``y``). It may be a ``ClassLabel``
     (its names are kept, or replaced by ``class_names`` of the same length), integers (names from
     ``class_names``, else the ModelNet40 / ScanObjectNN names for those two data sets (short name or repo
     id), else
     ``"0", "1", ...``), or strings (mapped through ``class_names``, else through the known class list
     for the two short names, else through the sorted set of strings found in *all* splits of the
     dataset, so that label ids agree between train and test).

2. **An h5 folder** in the ``modelnet40_ply_hdf5_2048`` layout (also used for ScanObjectNN):
   ``{split}_files.txt`` lists h5 files (paths such as ``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``
   are resolved by basename inside the folder); without it, ``*{split}*.h5`` files are globbed. Each file
   holds ``data`` ``[N, P, C>=3]`` and ``label`` ``[N]`` or ``[N, 1]``. Class names come from
   ``class_names``, else ``shape_names.txt``, else :data:`MODELNET40_CLASSES` / :data:`SCANOBJECTNN_CLASSES`
   when the folder or file names say which (``modelnet40`` / ``ply_data_`` versus ``scanobject`` /
   ``objectdataset``). Needs :mod:`h5py` (``pip install pointclip_hf[h5]``).

3. **A class-folder tree** of point-cloud or mesh files (any of
   :data:`pointclip_hf.point_cloud_io.SUPPORTED_EXTENSIONS`), read with
   :func:`pointclip_hf.point_cloud_io.load_point_cloud` (meshes are sampled to points there)::

       root/<split>/<class_name>/*.ply      (used when root/<split> exists)
       root/<class_name>/<split>/*.off      (the official ModelNet40 zip layout)
       root/<class_name>/*.npy              (no splits: the whole tree, whatever ``split`` says)

   Class names are the sorted class folder names, taken over all splits so that ids agree between
   splits (or ``class_names``, which must include every folder name).

``num_points`` keeps the first ``num_points`` points of each cloud, as the reference does
(``pointcloud[:1024]``); clouds with fewer points are kept whole.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
from datasets import Array2D, ClassLabel, Dataset, Features

from .point_cloud_io import SUPPORTED_EXTENSIONS, load_point_cloud
from .labels import check_labels

__all__ = [
    "HUB_DATASETS",
    "LABEL_COLUMN_CANDIDATES",
    "MODELNET40_CLASSES",
    "POINTS_COLUMN_CANDIDATES",
    "POINT_FEATURES",
    "SCANOBJECTNN_CLASSES",
    "check_point_cloud_dataset",
    "class_names_of",
    "few_shot_subset",
    "load_point_cloud_dataset",
    "point_features",
    "train_validation_split",
]

MODELNET40_CLASSES: tuple[str, ...] = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp",
    "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)  # fmt: skip
SCANOBJECTNN_CLASSES: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table",
    "bed", "pillow", "sink", "sofa", "toilet",
)  # fmt: skip

HUB_DATASETS: dict[str, str] = {"modelnet40": "jxie/modelnet40", "scanobjectnn": "jxie/scanobjectnn"}
_KNOWN_CLASSES: dict[str, tuple[str, ...]] = {"modelnet40": MODELNET40_CLASSES, "scanobjectnn": SCANOBJECTNN_CLASSES}

POINTS_COLUMN_CANDIDATES: tuple[str, ...] = ("points", "pointcloud", "point_cloud", "xyz", "data", "pos", "inputs")
LABEL_COLUMN_CANDIDATES: tuple[str, ...] = ("label", "labels", "category", "class", "target", "y")

_H5_EXTENSIONS = (".h5", ".hdf5")
_SPLIT_DIR_NAMES = ("train", "test", "val", "validation", "valid", "eval")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_MAP_BATCH_SIZE = 256


def point_features(class_names: Sequence[str]) -> Features:
    """The schema of every data set here: ``points`` ``Array2D((None, 3), "float32")`` and a ``ClassLabel``."""
    return Features(
        {"points": Array2D(shape=(None, 3), dtype="float32"), "label": ClassLabel(names=list(class_names))}
    )


#: The schema for ModelNet40; use :func:`point_features` for another class list.
POINT_FEATURES: Features = point_features(MODELNET40_CLASSES)


# --------------------------------------------------------------------------- #
# public API


def load_point_cloud_dataset(
    source: str | os.PathLike,
    split: str = "train",
    *,
    points_column: str | None = None,
    label_column: str | None = None,
    class_names: Sequence[str] | None = None,
    num_points: int | None = None,
    **load_kwargs,
) -> Dataset:
    """Load a point-cloud classification split as a :class:`datasets.Dataset` (see the module docstring).

    Args:
        source: a short name from :data:`HUB_DATASETS`, a Hub dataset repo id, or a local folder (a data set
            repo / ``save_to_disk`` folder, an h5 folder, or a class-folder tree).
        split: the split to read (``"train"``, ``"test"``, ...). Hub sources also accept ``datasets``
            slicing such as ``"train[:10%]"``.
        points_column, label_column: column names, for Hub sources only; default: auto-detected.
        class_names: the class names in label-id order, overriding what the source says.
        num_points: keep only the first ``num_points`` points of each cloud.
        **load_kwargs: passed to ``datasets.load_dataset`` (``revision``, ``cache_dir``, ``data_files``,
            ...), Hub sources only.

    Returns:
        A ``Dataset`` with columns ``points`` (``Array2D((None, 3), "float32")``) and ``label`` (``ClassLabel``).

    Raises:
        ValueError: unknown source or split, no usable points/label column, malformed or non-finite points,
            an empty data set, or labels outside ``class_names``.
        ImportError: an h5 folder without :mod:`h5py` installed.
    """
    num_points = _check_num_points(num_points)
    class_names = _check_class_names(class_names)
    if isinstance(split, datasets.NamedSplit):
        split = str(split)
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string such as 'train' or 'test', got {split!r}")

    path_like = isinstance(source, os.PathLike)
    text = os.fspath(source)
    if not isinstance(text, str):
        raise TypeError(f"source must be a str or os.PathLike, got {type(source).__name__}")
    path = Path(text).expanduser()

    if path.is_dir():
        kind = _folder_kind(path)
        if kind not in ("hub", "saved") and (points_column or label_column or load_kwargs):
            given = [n for n, v in (("points_column", points_column), ("label_column", label_column)) if v]
            given += sorted(load_kwargs)
            raise TypeError(
                f"{', '.join(given)} only apply to Hub-style data sets, but {text!r} is "
                f"{'an h5 folder' if kind == 'h5' else 'a class-folder tree'}"
            )
        if kind == "h5":
            return _load_h5_folder(path, split, class_names, num_points)
        if kind == "tree":
            return _load_folder_tree(path, split, class_names, num_points)
        if kind == "saved":
            dataset = _load_saved(path, split, load_kwargs)
        else:
            dataset = _load_hub(str(path), split, load_kwargs)
        return _to_point_dataset(
            dataset, split, source=str(path), short_name=None, points_column=points_column,
            label_column=label_column, class_names=class_names, num_points=num_points,
            all_splits=lambda: (
                _all_hub_splits(str(path), load_kwargs) if kind == "hub" else datasets.load_from_disk(str(path))
            ),
        )  # fmt: skip
    if path.exists():
        raise ValueError(
            f"{text!r} is a file, not a known dataset name, Hub repo or folder; "
            "use pointclip_hf.load_point_cloud to read a single point-cloud file"
        )

    by_repo = {repo: name for name, repo in HUB_DATASETS.items()}
    short_name = text.lower() if text.lower() in HUB_DATASETS else by_repo.get(text)
    repo_id = HUB_DATASETS[short_name] if short_name else text
    looks_like_path = path_like or text.startswith((".", "/", "~", "\\")) or os.sep in text.replace("/", "")
    if short_name is None and (looks_like_path or not _REPO_ID.match(text) or text.count("/") > 1):
        raise ValueError(
            f"{text!r} is not a known dataset name, Hub repo or folder (no such folder exists; "
            f"known names: {', '.join(HUB_DATASETS)})"
        )
    dataset = _load_hub(repo_id, split, load_kwargs)
    return _to_point_dataset(
        dataset, split, source=repo_id, short_name=short_name, points_column=points_column,
        label_column=label_column, class_names=class_names, num_points=num_points,
        all_splits=lambda: _all_hub_splits(repo_id, load_kwargs),
    )  # fmt: skip


def check_point_cloud_dataset(dataset, what: str = "dataset") -> Dataset:
    """Return `dataset` if it is one non-empty split with `points` and `label` columns, else raise naming the problem."""
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise TypeError(f"The {what} is a dictionary of splits {list(dataset)}; pass one split, e.g. dataset['test'].")
    if isinstance(dataset, datasets.IterableDataset):
        raise TypeError(f"The {what} is a streaming (iterable) dataset; a datasets.Dataset with a length is needed.")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"The {what} must be a datasets.Dataset, got {type(dataset).__name__}.")
    missing = [column for column in ("points", "label") if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The {what} lacks the column(s) {missing}; it has {dataset.column_names}. Expected 'points' "
            "(Array2D (None, 3) float32) and 'label' (ClassLabel)."
        )
    if len(dataset) == 0:
        raise ValueError(f"The {what} is empty.")
    return dataset


def class_names_of(dataset) -> list[str]:
    """The class names of a data set's ``label`` column (a ``ClassLabel``), in label-id order."""
    features = getattr(dataset, "features", None)
    if features is None or "label" not in features:
        columns = list(features) if features is not None else []
        raise ValueError(f"dataset has no 'label' column (columns: {columns})")
    feature = features["label"]
    if not isinstance(feature, ClassLabel):
        raise ValueError(f"the 'label' column is {feature!r}, not a ClassLabel; it carries no class names")
    return list(feature.names)


def few_shot_subset(dataset: Dataset, shots: int, seed: int = 0, replace: bool = False) -> Dataset:
    """Exactly ``shots`` examples of every class, chosen deterministically from ``seed``.

    Every class of the ``ClassLabel`` (or every label value present, for a plain integer column) gets
    ``shots`` rows, drawn with ``numpy.random.default_rng(seed)``: a random permutation of the class's rows,
    first ``shots`` kept. Rows come back in dataset order (sorted indices); features are unchanged.

    A class with fewer than ``shots`` examples is an error, unless ``replace=True``: then, as the reference's
    ``random.choices``, that class is sampled *with replacement* (rows may repeat); classes with enough
    examples are still sampled without replacement. A class with no example at all is always an error.
    """
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)):
        raise TypeError(f"shots must be an int, got {shots!r}")
    if shots <= 0:
        raise ValueError(f"shots must be a positive number of examples per class, got {shots}")
    labels, classes, names = _labels_and_classes(dataset)
    rng = np.random.default_rng(seed)
    chosen, short = [], []
    for c in classes:
        rows = np.flatnonzero(labels == c)
        if len(rows) >= shots:
            chosen.append(rng.permutation(rows)[:shots])
        elif replace and len(rows) > 0:
            chosen.append(rng.choice(rows, size=shots, replace=True))
        else:
            short.append(f"{names(c)!r} (label {c}) has {len(rows)}")
    if short:
        hint = "" if replace else "; pass replace=True to sample short classes with replacement"
        raise ValueError(
            f"few_shot_subset(shots={shots}): some classes have fewer than {shots} examples: "
            f"{', '.join(short)}{hint}"
        )
    return dataset.select(np.sort(np.concatenate(chosen)))


def train_validation_split(
    dataset: Dataset, validation_fraction: float | int = 0.2, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Split a *training* set into ``(train, validation)``, stratified per class and deterministic.

    The reference validates on the test set (``val = test``); this carves a validation set out of the
    training data instead, so pass the training split (a warning is given for a split named ``test``).

    Args:
        validation_fraction: a float in ``(0, 1)``: that fraction of every class, rounded, at least one
            example when the class has two or more, and always leaving one for training; or an int ``k >= 1``:
            exactly ``k`` examples of every class (each class then needs more than ``k`` examples).
        seed: seed for ``numpy.random.default_rng``.

    Returns:
        ``(train, validation)``: disjoint, together all rows, each in dataset order.
    """
    numeric = (int, float, np.integer, np.floating)
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, numeric):
        raise TypeError(
            f"validation_fraction must be a float in (0, 1) or an int count, got {validation_fraction!r}"
        )
    per_class_count = isinstance(validation_fraction, (int, np.integer))
    if per_class_count and validation_fraction < 1:
        raise ValueError(f"a per-class validation count must be >= 1, got {validation_fraction}")
    if not per_class_count and not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    split_name = str(getattr(dataset, "split", None) or "")
    if split_name.startswith("test"):
        warnings.warn(
            f"train_validation_split got the {split_name!r} split; carve validation data from the training split",
            UserWarning,
            stacklevel=2,
        )
    labels, classes, names = _labels_and_classes(dataset)
    rng = np.random.default_rng(seed)
    validation, too_small = [], []
    for c in classes:
        rows = rng.permutation(np.flatnonzero(labels == c))
        if per_class_count:
            if len(rows) <= validation_fraction:
                too_small.append(f"{names(c)!r} (label {c}) has {len(rows)}")
                continue
            count = int(validation_fraction)
        else:
            count = int(np.floor(validation_fraction * len(rows) + 0.5))
            count = min(max(count, 1), len(rows) - 1) if len(rows) >= 2 else 0
        validation.append(rows[:count])
    if too_small:
        raise ValueError(
            f"train_validation_split: {validation_fraction} validation examples per class need at least "
            f"{validation_fraction + 1} examples per class, but {', '.join(too_small)}"
        )
    val_rows = np.sort(np.concatenate(validation)) if validation else np.zeros(0, dtype=np.int64)
    keep = np.ones(len(labels), dtype=bool)
    keep[val_rows] = False
    return dataset.select(np.flatnonzero(keep)), dataset.select(val_rows)


# --------------------------------------------------------------------------- #
# argument checks and shared helpers


def _check_num_points(num_points):
    if num_points is None:
        return None
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)):
        raise TypeError(f"num_points must be an int or None, got {num_points!r}")
    if num_points <= 0:
        raise ValueError(f"num_points must be positive, got {num_points}")
    return int(num_points)


def _check_class_names(class_names):
    if class_names is None:
        return None
    if isinstance(class_names, str):
        raise TypeError("class_names must be a list of strings, not a single string")
    return check_labels(class_names)


def _labels_and_classes(dataset):
    """(labels as int array, the class ids to cover, id -> printable name)."""
    if "label" not in dataset.column_names:
        raise ValueError(f"dataset has no 'label' column (columns: {dataset.column_names})")
    labels = np.asarray(dataset["label"])
    if len(labels) == 0:
        raise ValueError("dataset is empty (0 rows)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"the 'label' column must hold integer class ids, got dtype {labels.dtype}")
    feature = dataset.features["label"]
    if isinstance(feature, ClassLabel):
        classes = np.arange(feature.num_classes)
        return labels, classes, lambda c: feature.names[int(c)]
    return labels, np.unique(labels[labels >= 0]), lambda c: str(int(c))


def _finite_check(points: np.ndarray, first_row: int, where: str) -> None:
    """Raise naming the first row (global index) of a [B, N, 3] block with NaN/inf coordinates."""
    bad = ~np.isfinite(points).reshape(len(points), -1).all(axis=1)
    if bad.any():
        row = first_row + int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"row {row} of {where} has NaN or infinite coordinates ({int(bad.sum())} such rows in this block)"
        )


def _resolve_names(labels: np.ndarray, class_names, fallback, what: str) -> list[str]:
    """Pick class names for integer labels and check the labels fit."""
    if labels.size and labels.min() < 0:
        row = int(np.flatnonzero(labels < 0)[0])
        raise ValueError(f"row {row} of {what} has a negative label {int(labels[row])}")
    top = int(labels.max()) if labels.size else -1
    names = class_names if class_names is not None else fallback
    if names is None:
        return [str(i) for i in range(top + 1)]
    if top >= len(names):
        raise ValueError(
            f"{what} has label {top}, but only {len(names)} class names are known ({names[:5]}...); "
            "pass class_names= with one name per label id"
        )
    return list(names)


# --------------------------------------------------------------------------- #
# source 1: Hub data sets (and local folders that load_dataset reads)


def _folder_kind(path: Path) -> str:
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        return "saved"
    top = [p for p in path.iterdir() if not p.name.startswith(".")]
    if any(p.is_file() and p.suffix.lower() in _H5_EXTENSIONS for p in top) or any(
        p.is_file() and p.name.endswith("_files.txt") for p in top
    ):
        return "h5"
    readme = path / "README.md"
    if readme.is_file() and readme.read_text(errors="replace").lstrip().startswith("---"):
        return "hub"  # a dataset card with a YAML header (configs / data_files)
    files = [p for depth in ("*", "*/*", "*/*/*") for p in path.glob(depth) if p.is_file()]
    suffixes = {p.suffix.lower() for p in files}
    if suffixes & {".parquet", ".arrow"}:
        return "hub"
    if suffixes & {".json", ".jsonl"} and not suffixes & set(SUPPORTED_EXTENSIONS):
        return "hub"  # json(l) data files; json beside point-cloud files is taken as metadata of a tree
    return "tree"


def _load_hub(repo_id: str, split: str, load_kwargs: dict) -> Dataset:
    if "split" in load_kwargs:
        raise TypeError("pass split as the second argument, not in load_kwargs")
    try:
        dataset = datasets.load_dataset(repo_id, split=split, **load_kwargs)
    except ValueError as exc:
        if "Unknown split" in str(exc) or "Bad split" in str(exc):
            raise ValueError(f"unknown split {split!r} for dataset {repo_id!r}: {exc}") from exc
        raise
    except (FileNotFoundError, ConnectionError) as exc:
        # DatasetNotFoundError is a FileNotFoundError; offline, a missing repo is a ConnectionError.
        raise ValueError(
            f"{repo_id!r} is not a known dataset name, Hub repo or folder (or the Hub cannot be reached and it "
            f"is not cached): {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(dataset, Dataset):
        raise TypeError(
            f"load_dataset({repo_id!r}, split={split!r}) returned a {type(dataset).__name__}; a map-style "
            "Dataset is needed (streaming is not supported)"
        )
    return dataset


def _all_hub_splits(repo_id: str, load_kwargs: dict):
    return datasets.load_dataset(repo_id, **load_kwargs)


def _load_saved(path: Path, split: str, load_kwargs: dict) -> Dataset:
    if load_kwargs:
        raise TypeError(f"{sorted(load_kwargs)} do not apply to a save_to_disk folder ({str(path)!r})")
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"unknown split {split!r} in {str(path)!r}; available splits: {list(loaded)}")
        return loaded[split]
    return loaded


def _pick_column(dataset: Dataset, explicit, candidates, what: str, source: str) -> str:
    columns = dataset.column_names
    if explicit is not None:
        if explicit not in columns:
            raise ValueError(f"{what} column {explicit!r} is not in dataset {source!r}; columns found: {columns}")
        return explicit
    for name in candidates:
        if name in columns:
            return name
    raise ValueError(
        f"dataset {source!r} has no usable {what} column: tried {list(candidates)}, columns found: {columns}; "
        f"pass {what}_column="
    )


def _to_point_dataset(
    dataset, split, *, source, short_name, points_column, label_column, class_names, num_points, all_splits
) -> Dataset:
    """Map a Hub-style data set's columns to the {points, label} schema."""
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} of dataset {source!r} is empty (0 rows)")
    pcol = _pick_column(dataset, points_column, POINTS_COLUMN_CANDIDATES, "points", source)
    lcol = _pick_column(dataset, label_column, LABEL_COLUMN_CANDIDATES, "label", source)
    if pcol == lcol:
        raise ValueError(f"points and label columns are the same column {pcol!r}")
    label_feature = dataset.features[lcol]
    known = _KNOWN_CLASSES.get(short_name) if short_name else None
    string_map = None  # str label -> id, for string labels

    if isinstance(label_feature, ClassLabel):
        names = list(label_feature.names)
        if class_names is not None:
            if len(class_names) != len(names):
                raise ValueError(
                    f"class_names has {len(class_names)} names but the ClassLabel column {lcol!r} has "
                    f"{len(names)}: {names}"
                )
            names = class_names
    elif isinstance(label_feature, datasets.Value) and label_feature.dtype in ("string", "large_string"):
        present = [s for s in dataset.unique(lcol)]
        if None in present:
            raise ValueError(f"label column {lcol!r} of dataset {source!r} has missing (None) labels")
        if class_names is not None:
            names = class_names
        elif known is not None and set(present) <= set(known):
            names = list(known)
        else:
            names = sorted(set(present) | _labels_in_other_splits(all_splits, lcol, str))
        unknown = sorted(set(present) - set(names))
        if unknown:
            raise ValueError(f"label column {lcol!r} has labels not in class_names: {unknown}")
        string_map = {name: i for i, name in enumerate(names)}
    elif isinstance(label_feature, datasets.Value) and label_feature.dtype.startswith(("int", "uint")):
        ints = np.asarray(dataset[lcol])
        if class_names is None and known is None:
            others = _labels_in_other_splits(all_splits, lcol, int)
            if others:
                ints = np.concatenate([ints, np.fromiter(others, dtype=np.int64)])
        names = _resolve_names(ints, class_names, known, f"label column {lcol!r} of dataset {source!r}")
    else:
        raise ValueError(
            f"label column {lcol!r} of dataset {source!r} is {label_feature!r}; expected a ClassLabel, "
            "integers or strings"
        )

    features = point_features(names)
    num_classes = len(names)
    where = f"points column {pcol!r} of dataset {source!r}"

    def convert(batch, indices):
        clouds = []
        for row, cloud in zip(indices, batch[pcol]):
            clouds.append(_row_to_xyz(cloud, row, where, num_points))
        raw = batch[lcol]
        if string_map is not None:
            labels = np.array([string_map.get(s, -1) for s in raw], dtype=np.int64)
        else:
            labels = np.asarray(raw, dtype=np.int64)
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            row = indices[int(np.flatnonzero(bad)[0])]
            raise ValueError(f"row {row} of label column {lcol!r} has label {raw[int(np.flatnonzero(bad)[0])]!r}, "
                             f"not a class id in [0, {num_classes})")
        return {"points": clouds, "label": labels}

    converted = dataset.select_columns([pcol, lcol]).with_format("numpy").map(
        convert,
        batched=True,
        batch_size=_MAP_BATCH_SIZE,
        with_indices=True,
        remove_columns=[pcol, lcol],
        features=features,
        desc="Converting point clouds",
    )
    return converted.with_format(None)


def _labels_in_other_splits(all_splits, column: str, kind) -> set:
    """Label values over every split of the data set (so ids agree between splits); empty if unavailable."""
    try:
        full = all_splits()
    except Exception as exc:  # a data set loadable only split by split: fall back to this split
        warnings.warn(
            f"could not read the other splits to fix the label order ({type(exc).__name__}: {exc}); class ids "
            "come from this split only, pass class_names= to be sure they agree between splits",
            UserWarning,
            stacklevel=4,
        )
        return set()
    if full is None or not isinstance(full, datasets.DatasetDict):
        return set()
    values = set()
    for part in full.values():
        if column in part.column_names:
            values.update(kind(v) for v in part.unique(column) if v is not None)
    return values


def _row_to_xyz(cloud, row: int, where: str, num_points: int | None) -> np.ndarray:
    array = np.asarray(cloud) if cloud is not None else None
    if array is None:
        raise ValueError(f"row {row} of {where} is missing (None)")
    if array.dtype == object:
        raise ValueError(
            f"row {row} of {where} is ragged: its points do not all have the same number of coordinates "
            "(each point needs x, y, z)"
        )
    if array.ndim != 2 or array.shape[1] < 3:
        raise ValueError(
            f"row {row} of {where} has shape {array.shape}; expected [N, C] points with C >= 3 (x, y, z)"
        )
    if array.shape[0] == 0:
        raise ValueError(f"row {row} of {where} has no points")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"row {row} of {where} has non-numeric dtype {array.dtype}")
    xyz = array[:num_points, :3] if num_points else array[:, :3]
    xyz = np.ascontiguousarray(xyz, dtype=np.float32)
    if not np.isfinite(xyz).all():
        raise ValueError(f"row {row} of {where} has NaN or infinite coordinates")
    return xyz


# --------------------------------------------------------------------------- #
# source 2: h5 folders (modelnet40_ply_hdf5_2048, ScanObjectNN)


def _import_h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(
            "Reading h5 point-cloud folders needs h5py, which is not installed: "
            "pip install 'pointclip_hf[h5]' (or pip install h5py)"
        ) from exc
    return h5py


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _h5_splits(root: Path) -> list[str]:
    found = {p.name[: -len("_files.txt")] for p in root.glob("*_files.txt")}
    for p in root.iterdir():
        if p.suffix.lower() in _H5_EXTENSIONS:
            name = p.name.lower()
            found.update(s for s in ("train", "test", "val") if s in name)
    return sorted(found)


def _h5_files(root: Path, split: str) -> list[Path]:
    listing = root / f"{split}_files.txt"
    if listing.is_file():
        entries = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        files = []
        for entry in entries:
            candidate = root / Path(entry.replace("\\", "/")).name
            if not candidate.is_file():
                raise FileNotFoundError(
                    f"{listing.name} lists {entry!r}, but {candidate.name!r} is not in {str(root)!r}"
                )
            files.append(candidate)
        if not files:
            raise ValueError(f"{str(listing)!r} lists no h5 files: the {split!r} split is empty")
        return files
    files = sorted(
        (p for p in root.iterdir() if p.suffix.lower() in _H5_EXTENSIONS and split.lower() in p.name.lower()),
        key=_natural_key,
    )
    if not files:
        raise ValueError(
            f"unknown split {split!r} for the h5 folder {str(root)!r}: no {split}_files.txt and no "
            f"*{split}*.h5 file; available splits: {_h5_splits(root)}"
        )
    stems = {re.sub(r"\d+", "", p.stem) for p in files}
    if len(stems) > 1:
        warnings.warn(
            f"*{split}*.h5 matched several kinds of file in {str(root)!r} ({[p.name for p in files]}); all are "
            f"concatenated. Write a {split}_files.txt listing the ones you want.",
            UserWarning,
            stacklevel=4,
        )
    return files


def _h5_default_names(root: Path, files: list[Path]):
    shape_names = root / "shape_names.txt"
    if shape_names.is_file():
        return [line.strip() for line in shape_names.read_text().splitlines() if line.strip()]
    hint = (str(root.resolve()) + " " + " ".join(p.name for p in files)).lower()
    if "scanobject" in hint or "objectdataset" in hint:
        return list(SCANOBJECTNN_CLASSES)
    if "modelnet40" in hint or "ply_data_" in hint:
        return list(MODELNET40_CLASSES)
    return None


def _load_h5_folder(root: Path, split: str, class_names, num_points) -> Dataset:
    h5py = _import_h5py()
    files = _h5_files(root, split)
    blocks, labels, offset = [], [], 0
    for file in files:
        with h5py.File(file, "r") as handle:
            keys = list(handle.keys())
            if "data" not in handle or "label" not in handle:
                raise ValueError(f"h5 file {str(file)!r} needs 'data' and 'label' datasets, found {keys}")
            data = handle["data"]
            if data.ndim != 3 or data.shape[2] < 3:
                raise ValueError(
                    f"h5 file {str(file)!r}: 'data' has shape {data.shape}, expected [N, P, C>=3] points"
                )
            points = data[:, :num_points, :3] if num_points else data[:, :, :3]
            label = np.asarray(handle["label"])
        points = np.ascontiguousarray(points, dtype=np.float32)
        if label.ndim == 2 and label.shape[1] == 1:
            label = label[:, 0]
        if label.ndim != 1 or len(label) != len(points):
            raise ValueError(
                f"h5 file {str(file)!r}: 'label' has shape {label.shape} for {len(points)} clouds; "
                "expected [N] or [N, 1]"
            )
        if not np.issubdtype(label.dtype, np.integer):
            if not np.all(np.isfinite(label)) or not np.all(label == np.round(label)):
                raise ValueError(f"h5 file {str(file)!r}: 'label' holds non-integer values")
        if points.shape[1] == 0 and len(points):
            raise ValueError(f"h5 file {str(file)!r}: clouds have no points")
        _finite_check(points, offset, f"the {split!r} split (file {file.name!r})")
        blocks.append(points)
        labels.append(label.astype(np.int64))
        offset += len(points)
    if offset == 0:
        raise ValueError(f"the {split!r} split of the h5 folder {str(root)!r} is empty (0 clouds)")
    defaults = _h5_default_names(root, files) if class_names is None else None
    if class_names is None and defaults is None:
        raise ValueError(
            f"cannot tell the class names of the h5 folder {str(root)!r}: add a shape_names.txt (one name per "
            "line, in label order) or pass class_names="
        )
    names = _resolve_names(np.concatenate(labels), class_names, defaults, f"the h5 folder {str(root)!r}")
    features = point_features(names)
    parts = [
        Dataset.from_dict({"points": block, "label": label}, features=features, split=split)
        for block, label in zip(blocks, labels)
        if len(block)
    ]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts, split=split)


# --------------------------------------------------------------------------- #
# source 3: class-folder trees of point-cloud / mesh files


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _cloud_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return sorted(
        (
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_EXTENSIONS
        ),
        key=_natural_key,
    )


def _load_folder_tree(root: Path, split: str, class_names, num_points) -> Dataset:
    top = _subdirs(root)
    split_dirs = [d for d in top if d.name.lower() in _SPLIT_DIR_NAMES]
    if (root / split).is_dir() or split_dirs:
        # root/<split>/<class>/files
        if not (root / split).is_dir():
            raise ValueError(
                f"unknown split {split!r} for the folder {str(root)!r}; "
                f"available splits: {[d.name for d in split_dirs]}"
            )
        all_split_dirs = {d.name: d for d in split_dirs}
        all_split_dirs[split] = root / split
        found = sorted({c.name for d in all_split_dirs.values() for c in _subdirs(d)})
        files_of = {c: _cloud_files(root / split / c) for c in found}
        layout = f"{str(root / split)!r}/<class>/"
    else:
        inner_splits = sorted({s.name for c in top for s in _subdirs(c) if s.name.lower() in _SPLIT_DIR_NAMES})
        found = [c.name for c in top]
        if inner_splits:
            # root/<class>/<split>/files (ModelNet40 zip layout)
            if split not in inner_splits:
                raise ValueError(
                    f"unknown split {split!r} for the folder {str(root)!r}; available splits: {inner_splits}"
                )
            files_of = {c: _cloud_files(root / c / split) for c in found}
            layout = f"{str(root)!r}/<class>/{split}/"
        else:
            files_of = {c: _cloud_files(root / c) for c in found}
            layout = f"{str(root)!r}/<class>/"
            if split != "train":
                warnings.warn(
                    f"the folder {str(root)!r} has no split subfolders; returning all of it for split {split!r}",
                    UserWarning,
                    stacklevel=3,
                )
    if not any(files_of.values()):
        raise ValueError(
            f"{str(root)!r} is not a known dataset name, Hub repo or folder layout: no point-cloud files found "
            f"in {layout} (extensions: {', '.join(SUPPORTED_EXTENSIONS)})"
        )
    if class_names is not None:
        missing = [c for c in found if c not in class_names]
        if missing:
            raise ValueError(f"class folders {missing} in {str(root)!r} are not in class_names {class_names}")
        names = class_names
    else:
        names = found
    index = {name: i for i, name in enumerate(names)}
    clouds, labels = [], []
    for name in found:
        for file in files_of[name]:
            points = load_point_cloud(file)
            xyz = points[:num_points, :3] if num_points else points[:, :3]
            xyz = np.ascontiguousarray(xyz, dtype=np.float32)
            if not np.isfinite(xyz).all():
                raise ValueError(f"row {len(clouds)} ({str(file)!r}) has NaN or infinite coordinates")
            clouds.append(xyz)
            labels.append(index[name])
    return Dataset.from_dict(
        {"points": clouds, "label": np.asarray(labels, dtype=np.int64)}, features=point_features(names), split=split
    )
