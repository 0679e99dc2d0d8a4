"""
The one schema of every point-cloud classification dataset here, the class lists of the known datasets and the rules
for class names.

    {"points": Array2D(shape=(None, 3), dtype="float32"),   # one [N, 3] cloud per row, x y z only
     "label":  ClassLabel(names=[...])}                      # class names in label-id order
"""

from collections.abc import Sequence

import datasets
import numpy as np
from datasets import Array2D, ClassLabel, Dataset, Features

from ..io.errors import check_rules
from ..model.prompts import check_labels

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


def point_features(class_names: Sequence[str]) -> Features:
    """
    The schema of every dataset here.

    Args:
        class_names (`Sequence[str]`):
            The class names, in label-id order.

    Returns:
        `datasets.Features`: `points` as `Array2D((None, 3), "float32")` and `label` as a `ClassLabel`.
    """
    return Features({"points": Array2D(shape=(None, 3), dtype="float32"), "label": ClassLabel(names=list(class_names))})


# The schema for ModelNet40; use `point_features` for another class list.
POINT_FEATURES: Features = point_features(MODELNET40_CLASSES)


def check_point_cloud_dataset(dataset, what: str = "dataset") -> Dataset:
    """
    Check that `dataset` is one non-empty split with `points` and `label` columns.

    Args:
        dataset (`datasets.Dataset`):
            The dataset to check.
        what (`str`, *optional*, defaults to `"dataset"`):
            How error messages name it.

    Returns:
        `datasets.Dataset`: `dataset` itself.

    Raises:
        TypeError, ValueError: naming the problem.
    """
    if not isinstance(dataset, Dataset):
        if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            got = f"a dictionary of splits {list(dataset)}; pass one split, e.g. dataset['test']"
        elif isinstance(dataset, datasets.IterableDataset):
            got = "a streaming (iterable) dataset; a datasets.Dataset with a length is needed"
        else:
            got = f"a {type(dataset).__name__}"
        raise TypeError(f"The {what} must be one split, a datasets.Dataset; it is {got}.")
    missing = [column for column in ("points", "label") if column not in dataset.column_names]
    check_rules([
        (not missing, f"The {what} lacks the column(s) {missing}; it has {dataset.column_names}. Expected 'points' "
                      "(Array2D (None, 3) float32) and 'label' (ClassLabel)."),
        (len(dataset) > 0, f"The {what} is empty."),
    ], error=ValueError)  # fmt: skip
    return dataset


def class_names_of(dataset) -> list[str]:
    """
    The class names of a dataset's `label` column.

    Args:
        dataset (`datasets.Dataset`):
            A dataset whose `label` column is a `ClassLabel`.

    Returns:
        `list[str]`: the names, in label-id order.
    """
    features = getattr(dataset, "features", None) or {}
    feature = features.get("label")
    if not isinstance(feature, ClassLabel):
        raise ValueError(
            f"the 'label' column is {feature!r}, not a ClassLabel; it carries no class names"
            if feature is not None
            else f"dataset has no 'label' column (columns: {list(features)})"
        )
    return list(feature.names)


def check_class_names(class_names: Sequence[str] | None) -> list[str] | None:
    """Class names given by a caller, checked with the rule for every label list ([`check_labels`])."""
    if class_names is None:
        return None
    if isinstance(class_names, str):
        raise TypeError("class_names must be a list of strings, not a single string")
    return check_labels(class_names)


def resolve_class_names(labels: np.ndarray, class_names, fallback, what: str) -> list[str]:
    """
    Pick the class names for integer labels, and check that the labels fit them.

    Args:
        labels (`np.ndarray` of shape `(rows,)`):
            The integer labels.
        class_names (`list[str]`, *optional*):
            Names given by the caller; they win.
        fallback (`Sequence[str]`, *optional*):
            Names the source implies (a known dataset's list); without either, the names are `"0", "1", ...`.
        what (`str`):
            How error messages name the labels' source.
    """
    names = class_names if class_names is not None else fallback
    top = int(labels.max()) if labels.size else -1
    bad = (labels < 0) | (labels >= len(names) if names is not None else False)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"row {row} of {what} has label {int(labels[row])}, but only {len(names or [])} class names are known "
            f"({(names or [])[:5]}...); pass class_names= with one name per label id"
            if labels[row] >= 0
            else f"row {row} of {what} has a negative label {int(labels[row])}"
        )
    return list(names) if names is not None else [str(i) for i in range(top + 1)]
