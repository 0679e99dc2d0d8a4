"""Subsets of a labelled dataset: `few_shot_subset` (k examples per class) and `train_validation_split`."""

import warnings

import numpy as np
from datasets import ClassLabel, Dataset

from ..io.errors import check_rules


def few_shot_subset(dataset: Dataset, shots: int, seed: int = 0, replace: bool = False) -> Dataset:
    """
    Exactly `shots` examples of every class, chosen deterministically from `seed`.

    Every class of the `ClassLabel` (or every label value present, for a plain integer column) gets `shots` rows,
    drawn with `numpy.random.default_rng(seed)`: a random permutation of the class's rows, first `shots` kept.

    Args:
        dataset (`datasets.Dataset`):
            A dataset with an integer `label` column.
        shots (`int`):
            Examples per class.
        seed (`int`, *optional*, defaults to 0):
            Seed of the draw.
        replace (`bool`, *optional*, defaults to `False`):
            Sample a class with fewer than `shots` examples *with replacement* (rows may repeat), as the reference's
            `random.choices`; classes with enough examples are still sampled without replacement. Without it such a
            class is an error; a class with no example at all always is.

    Returns:
        `datasets.Dataset`: the chosen rows in dataset order (sorted indices), features unchanged.
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
            f"few_shot_subset(shots={shots}): some classes have fewer than {shots} examples: {', '.join(short)}{hint}"
        )
    return dataset.select(np.sort(np.concatenate(chosen)))


def train_validation_split(
    dataset: Dataset, validation_fraction: float | int = 0.2, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """
    Split a *training* set into `(train, validation)`, stratified per class and deterministic.

    The reference validates on the test set (`val = test`); this carves a validation set out of the training data
    instead, so pass the training split (a warning is given for a split named `test`).

    Args:
        dataset (`datasets.Dataset`):
            A dataset with an integer `label` column.
        validation_fraction (`float` or `int`, *optional*, defaults to 0.2):
            A float in `(0, 1)`: that fraction of every class, rounded, at least one example when the class has two
            or more, and always leaving one for training; or an int `k >= 1`: exactly `k` examples of every class
            (each class then needs more than `k` examples).
        seed (`int`, *optional*, defaults to 0):
            Seed for `numpy.random.default_rng`.

    Returns:
        `tuple[datasets.Dataset, datasets.Dataset]`: `(train, validation)`, disjoint, together all rows, each in
        dataset order.
    """
    per_class_count = _is_per_class_count(validation_fraction)
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


def _is_per_class_count(validation_fraction) -> bool:
    """Whether `validation_fraction` is a count per class (an int) rather than a fraction; raise when it is neither."""
    numeric = (int, float, np.integer, np.floating)
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, numeric):
        raise TypeError(f"validation_fraction must be a float in (0, 1) or an int count, got {validation_fraction!r}")
    per_class_count = isinstance(validation_fraction, (int, np.integer))
    if not (validation_fraction >= 1 if per_class_count else 0.0 < validation_fraction < 1.0):
        raise ValueError(
            f"validation_fraction must be a float in (0, 1) or a per-class count >= 1, got {validation_fraction}"
        )
    return per_class_count


def _labels_and_classes(dataset):
    """`(labels as an integer array, the class ids to cover, class id -> printable name)`."""
    has_labels = "label" in dataset.column_names
    labels = np.asarray(dataset["label"]) if has_labels else np.zeros(0, dtype=np.int64)
    check_rules([
        (has_labels, f"dataset has no 'label' column (columns: {dataset.column_names})"),
        (not has_labels or len(labels) > 0, "dataset is empty (0 rows)"),
        (len(labels) == 0 or labels.dtype.kind in "iu",
         f"the 'label' column must hold integer class ids, got dtype {labels.dtype}"),
    ], error=ValueError)  # fmt: skip
    feature = dataset.features["label"]
    if isinstance(feature, ClassLabel):
        classes = np.arange(feature.num_classes)
        return labels, classes, lambda c: feature.names[int(c)]
    return labels, np.unique(labels[labels >= 0]), lambda c: str(int(c))
