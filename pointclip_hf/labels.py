"""The label rules, in one place: which candidate labels are usable, and whether they fit a trained adapter."""


def check_labels(labels) -> list[str]:
    """Return `labels` as a list of strings, or raise if it is empty, holds non-strings or duplicates."""
    if isinstance(labels, str):
        labels = [part.strip() for part in labels.split(",")]
    labels = list(labels)
    if not labels:
        raise ValueError("The label list is empty: give at least one candidate label.")
    bad = [label for label in labels if not isinstance(label, str) or not label.strip()]
    if bad:
        raise ValueError(f"Labels must be non-empty strings, got {bad!r}.")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"The label list contains duplicates: {duplicates}.")
    return labels


def check_labels_fit_model(labels: list[str], label_names: list[str] | None) -> None:
    """
    Raise unless `labels` can be scored by a model whose adapter was trained on `label_names` (`None`: any labels).
    The adapter's logits follow its training classes, so the candidate labels must be exactly those, in any order.

    Args:
        labels (`list[str]`):
            Checked candidate labels.
        label_names (`list[str]`, *optional*):
            `config.label_names` of the model.
    """
    if label_names is not None and set(labels) != set(label_names):
        raise ValueError(
            f"This model's adapter was trained on the labels {label_names}; use those labels (in any order), "
            f"got {labels}."
        )


def class_ids_to_label_ids(class_names: list[str], label_names: list[str] | None) -> list[int]:
    """
    Map a dataset's class ids to a model's label ids: the same classes in any order are remapped, others refused.

    Args:
        class_names (`list[str]`):
            The dataset's `ClassLabel` names, in class-id order.
        label_names (`list[str]`, *optional*):
            `config.label_names` of the model (`None`: the dataset's own order).

    Returns:
        `list[int]`: for each dataset class id, the model's label id.
    """
    if label_names is None:
        return list(range(len(class_names)))
    check_labels_fit_model(list(class_names), list(label_names))
    return [list(label_names).index(name) for name in class_names]
