"""The checks [`evaluate`] and [`classify_files`] make before any work: arguments, labels, processor, output paths."""

import contextlib
import errno
import os
import tempfile
import warnings
from pathlib import Path

from ..argument_checks import check_counts
from ..model.prompts import check_labels, check_labels_fit_model
from .predictions_file import PREDICTIONS_FILE
from .report import CONFUSION_IMAGE_FILE, REPORT_FILE


def check_loop_arguments(batch_size, num_workers, top_k) -> None:
    check_counts({"batch_size": batch_size, "top_k": top_k}, optional=("top_k",))
    check_counts({"num_workers": num_workers}, minimum=0)


def dataset_labels(dataset, label_names) -> tuple[list[str], list[str] | None]:
    """
    The labels to prompt with for a dataset.

    Args:
        dataset (`datasets.Dataset`):
            A dataset with a `label` column.
        label_names (`Sequence[str]`, *optional*):
            Names given by the caller, one per class index; required when `label` is not a `ClassLabel`.

    Returns:
        `tuple[list[str], list[str] | None]`: the labels, and the dataset's own `ClassLabel` names (or `None`).
    """
    from datasets import ClassLabel

    feature = dataset.features["label"]
    class_names = list(feature.names) if isinstance(feature, ClassLabel) else None
    given = label_names if label_names is not None else class_names
    labels = check_labels(given) if given is not None else None
    if labels is None or (class_names is not None and len(labels) != len(class_names)):
        raise ValueError(
            f"The dataset's 'label' column is {feature!r}, not a ClassLabel; pass label_names=[...] (one name per "
            "class index)."
            if labels is None
            else f"label_names has {len(labels)} names ({labels}) but the dataset's ClassLabel has {len(class_names)} "
            f"classes ({class_names})."
        )
    return labels, class_names


def check_model_labels(model, labels: list[str], what: str) -> None:
    """Raise when `model` has an adapter trained on other labels than `labels` (described as `what`), in any order."""
    try:
        check_labels_fit_model(labels, model.config.label_names)
    except ValueError as error:
        raise ValueError(f"Label mismatch: {what} do not fit. {error}") from None


def check_processor(model, processor) -> None:
    """Raise when the processor renders another number of views than the model takes; warn on another projection."""
    extractor = processor.feature_extractor
    if extractor.num_views != model.config.num_views:
        raise ValueError(
            f"The processor renders {extractor.num_views} views, the model expects {model.config.num_views}."
        )
    if extractor.projection_style != model.config.projection_style:
        warnings.warn(
            f"The processor projects with {extractor.projection_style!r} but the model was configured for "
            f"{model.config.projection_style!r}.",
            stacklevel=3,
        )


@contextlib.contextmanager
def _cannot_write(what: str, path: Path):
    """Raise an `OSError` of the block again as one line: `Cannot write {what} to {path!r}: {reason}.`"""
    try:
        yield
    except OSError as error:
        raise OSError(f"Cannot write {what} to {str(path)!r}: {error.strerror or error}.") from error


def check_output_dir(output_dir: str | os.PathLike) -> Path:
    """Create `output_dir` if needed and make sure the evaluation results can be written there."""
    output_dir = Path(output_dir)
    with _cannot_write("evaluation results", output_dir):
        output_dir.mkdir(parents=True, exist_ok=True)
        _probe_directory(output_dir)
        in_the_way = [
            name for name in (PREDICTIONS_FILE, REPORT_FILE, CONFUSION_IMAGE_FILE) if (output_dir / name).is_dir()
        ]
        if in_the_way:
            raise IsADirectoryError(errno.EISDIR, f"a directory named {in_the_way[0]} is in the way")
    return output_dir


def check_output_file(output_path: str | os.PathLike) -> Path:
    """Create the folder of `output_path` if needed and make sure the predictions file can be written."""
    output_path = Path(output_path)
    with _cannot_write("predictions", output_path):
        output_path.parent.mkdir(parents=True, exist_ok=True)
        _probe_directory(output_path.parent)
        if output_path.exists():
            with open(output_path, "ab"):
                pass
    return output_path


def _probe_directory(directory: Path) -> None:
    """Really create (and remove) a file in `directory`: `os.access` is wrong for root and on some file systems."""
    handle, probe = tempfile.mkstemp(prefix=".pointclip-write-test-", dir=directory)
    os.close(handle)
    os.unlink(probe)
