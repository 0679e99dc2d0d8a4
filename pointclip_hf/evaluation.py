"""Evaluate a [`PointCLIPModel`] on a labelled dataset, or classify a folder of point-cloud files: streaming, resumable
and multi-process.

- `evaluate(model, dataset)` -> [`EvaluationReport`] (accuracy, per-class accuracy, confusion matrix and the full
  setup), with `output_dir/predictions.jsonl`, `output_dir/report.json` and `output_dir/confusion_matrix.png`.
- `classify_files(model, folder_or_paths, labels)` -> one record per file, optionally written to a JSONL file.

Pipeline
--------
A `torch.utils.data.DataLoader` with `num_workers` worker processes reads each cloud (a dataset row or a file) and
prepares it on the CPU with the processor's `prepare_points` (normalisation and sampling), *one cloud at a time*, so
clouds of different sizes are fine and a cloud's result never depends on its batch, worker or process (this matters
for `sampling="random"`, whose generator is re-seeded per call). The prepared clouds are stacked into `[B, N, 3]`; the
main process renders the views on the model's device and runs the model under `torch.inference_mode()`. Only one
batch of pixels and logits exists at a time and the confusion matrix is accumulated batch by batch, so memory stays
flat in the number of clouds (`classify_files` returns its records, which naturally grow with the number of files).

Predictions file (JSON lines)
-----------------------------
The first line is a header `{"header": {"format", "task", "fingerprint"}}`. The fingerprint holds everything that
determines the predictions: the model (`name_or_path`, a hash of its config, a hash of the adapter weights, its
dtype), the processor's point and image settings, the labels, `top_k`, and the data (the `datasets` fingerprint and
length of the dataset, or the count and a hash of the file paths). Then one line per cloud, in index order::

    {"index": 7, "label": "chair", "label_id": 2, "prediction": "table", "prediction_id": 5, "score": 0.41,
     "correct": false, "top_k": [{"label": "table", "score": 0.41}, ...]}                  (evaluate)
    {"index": 7, "path": "clouds/a.ply", "prediction": "table", "score": 0.41, "top_k": [...]}   (classify_files)

Lines are flushed after every batch. With `resume=True` (the default) an existing file is checked before anything
is written to it: a header from another run (other model, config, adapter, dtype, processor, labels, data) raises a
`ValueError` naming what differs and leaves the file untouched; a last line without its newline (the run died while
writing it) is cut off and recomputed; any other damage (a malformed line before the end, an index out of order)
raises. Because the loader keeps the order, the records of a file are always exactly the first indices of the work
it holds, so resuming means continuing right after them. `resume=False` starts afresh and overwrites.

Scale-out with accelerate
-------------------------
With an `accelerate.Accelerator` (passed in, or created here when the script was started with several processes by
`accelerate launch` / `torchrun`; on machines without GPUs the processes run on the CPU with gloo), process `r` of
`W` takes the indices `r, r + W, r + 2W, ...`: disjoint shards that cover every index once. There is no padding to
even batches and hence no duplicate to drop, and no collective operation runs inside the loop (the shards may take
different numbers of batches). Each process appends to its own shard file `predictions.rank{r}.jsonl` (its header also
names `rank` and `world_size`), so each process resumes its own shard on its own. At the end the confusion matrices
are summed across processes (`accelerator.reduce`) and `classify_files` gathers its records (`gather_object`) so
that every process returns the same result; the main process merges the shard files by index (a streaming k-way
merge), checks that the merged indices are exactly `0 .. n-1`, writes `predictions.jsonl` atomically with the header
a single-process run writes (the file is byte-for-byte the one a single process would write, given identical
numerics), deletes the shard files and writes the report. A single process writes `predictions.jsonl` directly.
The output location must be on a file system that all processes share. An interrupted multi-process run resumes with
the same number of processes (another number is a clear error; or pass `resume=False`); a finished
`predictions.jsonl` can be re-read by any number of processes. Set-up errors (a file of another run, a damaged
shard) are raised on every process, not only on the one that found them.

On CPU-only machines `accelerate launch --cpu --num_processes 2` starts a single process (it needs MPI for more); use
`torchrun --nproc_per_node 2 script.py` (or `accelerate launch --multi_gpu ...`) with `ACCELERATE_USE_CPU=1`.
"""

from __future__ import annotations

import atexit
import hashlib
import heapq
import io
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic_files import write_file_atomically
from .point_cloud_datasets import check_point_cloud_dataset
from .point_cloud_io import SUPPORTED_EXTENSIONS, load_point_cloud
from .labels import check_labels
from .pipeline_pointclip import label_embeddings
from .processing_pointclip import processor_for_model

FORMAT = "pointclip-predictions/1"
PREDICTIONS_FILE = "predictions.jsonl"
REPORT_FILE = "report.json"
CONFUSION_IMAGE_FILE = "confusion_matrix.png"
MAX_INLINE_PROMPT_CHARS = 20_000
DEFAULT_EVAL_TOP_K = 5


# ---------------------------------------------------------------------------------------------------------- report


@dataclass
class EvaluationReport:
    """
    accuracy: fraction of clouds whose top prediction is their label (overall accuracy).
    per_class_accuracy: per class name, the accuracy over its clouds (`None` for a class without clouds).
    num_samples: number of clouds evaluated.
    confusion_matrix: `[K][K]` counts, rows the true classes, columns the predictions, in label order.
    setup: everything needed to reproduce the result (model, config hash, projection, views, view weights, prompts,
        labels, adapter, dtype, processor settings, data) plus a `runtime` entry (device, processes, versions).
    mean_class_accuracy: the mean of the per-class accuracies over the classes that have clouds (ModelNet's "mAcc").
    """

    accuracy: float
    per_class_accuracy: dict[str, float | None]
    num_samples: int
    confusion_matrix: list[list[int]]
    setup: dict = field(default_factory=dict)
    mean_class_accuracy: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationReport:
        return cls(**data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvaluationReport:
        """Read a `report.json` (or the folder holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / REPORT_FILE
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    def save(self, output_dir: str | os.PathLike) -> Path:
        """Write `report.json` and `confusion_matrix.png` into `output_dir` (created if needed); returns the folder."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_file_atomically(output_dir / REPORT_FILE, (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8"))
        save_confusion_matrix_image(
            self.confusion_matrix,
            list(self.per_class_accuracy),
            output_dir / CONFUSION_IMAGE_FILE,
            title=f"accuracy {self.accuracy:.2%} over {self.num_samples} clouds",
        )
        return output_dir


def _build_report(confusion: np.ndarray, labels: list[str], setup: dict) -> EvaluationReport:
    totals = confusion.sum(axis=1)
    num_samples = int(totals.sum())
    per_class = {name: (float(confusion[i, i] / totals[i]) if totals[i] else None) for i, name in enumerate(labels)}
    present = [value for value in per_class.values() if value is not None]
    return EvaluationReport(
        accuracy=float(np.trace(confusion) / num_samples) if num_samples else 0.0,
        per_class_accuracy=per_class,
        num_samples=num_samples,
        confusion_matrix=confusion.tolist(),
        setup=setup,
        mean_class_accuracy=float(np.mean(present)) if present else None,
    )


def save_confusion_matrix_image(matrix, label_names: Sequence[str], path, title: str | None = None) -> None:
    """Draw a confusion matrix with Pillow: cells shaded by row-normalised counts (white 0 to dark blue 1), class
    names on both axes when there are at most 40 classes, counts in the cells when they are large enough."""
    from PIL import Image, ImageDraw, ImageFont

    matrix = np.asarray(matrix, dtype=np.int64)
    k = matrix.shape[0]
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    cell = int(np.clip(640 // max(k, 1), 2, 40))
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_height = int(math.ceil(probe.textbbox((0, 0), "Ag", font=font)[3]))
    names = [str(name) for name in label_names] if k <= 40 else []
    name_width = int(math.ceil(max((probe.textlength(name, font=font) for name in names), default=0)))
    pad = 6
    title = title or ""
    left = pad + text_height + pad + name_width + pad
    top = pad + text_height + pad + text_height + pad + name_width + pad
    width = max(left + k * cell + pad, pad + int(probe.textlength(title, font=font)) + pad)
    image = Image.new("RGB", (width, top + k * cell + pad), "white")

    dark = np.array([8, 48, 107], dtype=np.float64)
    colours = 255 + (dark - 255) * fractions[..., None]
    cells = Image.fromarray(colours.round().astype(np.uint8), "RGB").resize((k * cell, k * cell), Image.NEAREST)
    image.paste(cells, (left, top))
    draw = ImageDraw.Draw(image)
    draw.rectangle([left - 1, top - 1, left + k * cell, top + k * cell], outline=(150, 150, 150))
    draw.text((pad, pad), title, fill="black", font=font)
    draw.text((left, pad + text_height + pad), "predicted", fill="black", font=font)
    true_axis = Image.new("RGB", (int(probe.textlength("true", font=font)) + 2, text_height + 2), "white")
    ImageDraw.Draw(true_axis).text((1, 0), "true", fill="black", font=font)
    image.paste(true_axis.rotate(90, expand=True), (pad, top))
    for i, name in enumerate(names):
        offset = (cell - text_height) // 2
        row_x = left - pad - int(probe.textlength(name, font=font))
        draw.text((row_x, top + i * cell + offset), name, fill="black", font=font)
        column = Image.new("RGB", (max(int(probe.textlength(name, font=font)), 1) + 2, text_height + 2), "white")
        ImageDraw.Draw(column).text((1, 0), name, fill="black", font=font)
        column = column.rotate(90, expand=True)
        image.paste(column, (left + i * cell + offset, top - pad - column.height))
    if k <= 20 and cell >= 24:
        for i in range(k):
            for j in range(k):
                text = str(int(matrix[i, j]))
                x = left + j * cell + (cell - probe.textlength(text, font=font)) / 2
                y = top + i * cell + (cell - text_height) / 2
                draw.text((x, y), text, fill="white" if fractions[i, j] > 0.5 else "black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_file_atomically(Path(path), buffer.getvalue())


# ---------------------------------------------------------------------------------------------------------- public API


def evaluate(
    model,
    dataset,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    output_dir: str | os.PathLike | None = None,
    label_names: Sequence[str] | None = None,
    progress: bool = True,
    resume: bool = True,
    accelerator=None,
    top_k: int | None = DEFAULT_EVAL_TOP_K,
    processor=None,
) -> EvaluationReport:
    """
    Evaluate `model` on a labelled `datasets.Dataset` with a `points` column (`[N, 3+]` per row, sizes may differ)
    and a `label` column (`ClassLabel`).

    Args:
        batch_size: clouds rendered and encoded at once.
        num_workers: DataLoader worker processes that read, normalise and sample the clouds.
        output_dir: where to write `predictions.jsonl` (incrementally), `report.json` and `confusion_matrix.png`.
        label_names: the class names to prompt with, one per `ClassLabel` class in its order (default: the
            dataset's `ClassLabel` names; required when `label` is a plain integer column). Models with an adapter
            need exactly their `config.label_names`.
        progress: show a tqdm progress bar (on the main process).
        resume: continue an interrupted run from `output_dir/predictions.jsonl` (see the module documentation);
            `False` overwrites it.
        accelerator: an `accelerate.Accelerator` to shard the work across processes (the model is moved to its
            device); by default one is created when the script runs under `accelerate launch` / `torchrun` with
            several processes.
        top_k: number of best labels stored per cloud in the predictions file (`None`: all).
        processor: a `PointCLIPProcessor` (default: `processor_for_model(model)`).

    Returns:
        An [`EvaluationReport`], the same on every process.
    """
    _check_loop_arguments(batch_size, num_workers, top_k)
    dataset = check_point_cloud_dataset(dataset)
    labels, class_names = _dataset_labels(dataset, label_names)
    _check_model_labels(model, labels, "the dataset's classes" if label_names is None else "the given label_names")
    output_dir = _check_output_dir(output_dir) if output_dir is not None else None
    processor = processor_for_model(model, processor)
    _check_processor(model, processor)
    accelerator = _resolve_accelerator(accelerator)
    k = len(labels) if top_k is None else min(top_k, len(labels))
    data_fingerprint = {
        "kind": "dataset",
        "fingerprint": getattr(dataset, "_fingerprint", None),
        "num_samples": len(dataset),
        "class_names": class_names,
    }
    fingerprint = _fingerprint(model, processor, labels, k, data_fingerprint)
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    ids = {name: i for i, name in enumerate(labels)}

    def consume(record):
        confusion[ids[record["label"]], ids[record["prediction"]]] += 1

    def make_records(indices, batch, top_scores, top_ids):
        records = []
        for row, (index, label_id) in enumerate(zip(indices, batch[2].tolist())):
            prediction_id = top_ids[row][0]
            records.append(
                {
                    "index": index,
                    "label": labels[label_id],
                    "label_id": label_id,
                    "prediction": labels[prediction_id],
                    "prediction_id": prediction_id,
                    "score": top_scores[row][0],
                    "correct": label_id == prediction_id,
                    "top_k": [{"label": labels[i], "score": s} for i, s in zip(top_ids[row], top_scores[row])],
                }
            )
        return records

    formatted = dataset.with_format("numpy", columns=["points", "label"])
    _run(
        model=model,
        processor=processor,
        make_source=lambda indices: _RowSource(formatted, indices, processor.feature_extractor, len(labels)),
        num_items=len(dataset),
        labels=labels,
        k=k,
        batch_size=batch_size,
        num_workers=num_workers,
        path=output_dir / PREDICTIONS_FILE if output_dir is not None else None,
        header={"format": FORMAT, "task": "evaluate", "fingerprint": fingerprint},
        resume=resume,
        accelerator=accelerator,
        progress=progress,
        desc="Evaluating",
        make_records=make_records,
        consume=consume,
    )
    if accelerator is not None and accelerator.num_processes > 1:
        summed = accelerator.reduce(torch.from_numpy(confusion).to(accelerator.device), reduction="sum")
        confusion = summed.cpu().numpy().astype(np.int64)
    if int(confusion.sum()) != len(dataset):
        raise RuntimeError(f"Evaluated {int(confusion.sum())} clouds for a dataset of {len(dataset)} (a bug).")
    setup = _setup(model, processor, labels, k, data_fingerprint, fingerprint, accelerator, batch_size, num_workers)
    setup["dataset"].update(name=_dataset_name(dataset), split=None if dataset.split is None else str(dataset.split))
    report = _build_report(confusion, labels, setup)
    if output_dir is not None and _is_main(accelerator):
        report.save(output_dir)
    if accelerator is not None and accelerator.num_processes > 1:
        accelerator.wait_for_everyone()
    return report


def classify_files(
    model,
    paths_or_folder,
    labels,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    output_path: str | os.PathLike | None = None,
    top_k: int | None = None,
    progress: bool = True,
    resume: bool = True,
    accelerator=None,
    processor=None,
) -> list[dict]:
    """
    Classify point-cloud files against candidate `labels`.

    Args:
        paths_or_folder: a folder (searched recursively, in sorted order, for files with a supported extension), one
            file, or a list of files.
        labels: candidate class names (or a comma-separated string); `None` uses an adapter model's
            `config.label_names`.
        output_path: a JSONL file written incrementally (and resumable, see the module documentation).
        top_k: number of best labels kept per file (`None`: all).
        Other arguments as in [`evaluate`].

    Returns:
        One record per file, in order: `{"index", "path", "prediction", "score", "top_k": [{"label", "score"}...]}`
        (`top_k` is what `model.classify` returns for the file); the same list on every process.
    """
    _check_loop_arguments(batch_size, num_workers, top_k)
    if labels is None:
        if model.config.label_names is None:
            raise ValueError("Give the candidate labels (this model has no config.label_names).")
        labels = list(model.config.label_names)
    labels = check_labels(labels)
    _check_model_labels(model, labels, "the given labels")
    paths = _list_files(paths_or_folder)
    output_path = _check_output_file(output_path) if output_path is not None else None
    processor = processor_for_model(model, processor)
    _check_processor(model, processor)
    accelerator = _resolve_accelerator(accelerator)
    k = len(labels) if top_k is None else min(top_k, len(labels))
    data_fingerprint = {
        "kind": "files",
        "num_files": len(paths),
        "paths_sha256": hashlib.sha256("\n".join(paths).encode("utf-8")).hexdigest(),
    }
    fingerprint = _fingerprint(model, processor, labels, k, data_fingerprint)
    results = []

    def make_records(indices, batch, top_scores, top_ids):
        return [
            {
                "index": index,
                "path": paths[index],
                "prediction": labels[top_ids[row][0]],
                "score": top_scores[row][0],
                "top_k": [{"label": labels[i], "score": s} for i, s in zip(top_ids[row], top_scores[row])],
            }
            for row, index in enumerate(indices)
        ]

    _run(
        model=model,
        processor=processor,
        make_source=lambda indices: _FileSource(paths, indices, processor.feature_extractor),
        num_items=len(paths),
        labels=labels,
        k=k,
        batch_size=batch_size,
        num_workers=num_workers,
        path=output_path,
        header={"format": FORMAT, "task": "classify_files", "fingerprint": fingerprint},
        resume=resume,
        accelerator=accelerator,
        progress=progress,
        desc="Classifying",
        make_records=make_records,
        consume=results.append,
    )
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        results = [record for part in gather_object([results]) for record in part]
        results.sort(key=lambda record: record["index"])
    if [record["index"] for record in results] != list(range(len(paths))):
        raise RuntimeError(f"Classified {len(results)} files out of {len(paths)} (a bug).")
    return results


# ---------------------------------------------------------------------------------------------------------- checks


def _check_loop_arguments(batch_size, num_workers, top_k) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}.")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}.")


def _dataset_labels(dataset, label_names) -> tuple[list[str], list[str] | None]:
    """The labels to prompt with, and the dataset's own ClassLabel names (or None)."""
    from datasets import ClassLabel

    feature = dataset.features["label"]
    class_names = list(feature.names) if isinstance(feature, ClassLabel) else None
    if label_names is None:
        if class_names is None:
            raise ValueError(
                f"The dataset's 'label' column is {feature!r}, not a ClassLabel; pass label_names=[...] (one name per "
                "class index)."
            )
        return check_labels(class_names), class_names
    label_names = check_labels(label_names)
    if class_names is not None and len(label_names) != len(class_names):
        raise ValueError(
            f"label_names has {len(label_names)} names ({label_names}) but the dataset's ClassLabel has "
            f"{len(class_names)} classes ({class_names})."
        )
    return label_names, class_names


def _check_model_labels(model, labels: list[str], what: str) -> None:
    expected = model.config.label_names
    if expected is not None and labels != list(expected):
        raise ValueError(
            f"Label mismatch: {what} are {labels}, but this model's adapter was trained on config.label_names = "
            f"{list(expected)} (same names, same order required)."
        )


def _check_processor(model, processor) -> None:
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


def _probe_directory(directory: Path, what: str) -> None:
    """Really create (and remove) a file in `directory`: `os.access` is wrong for root and on some file systems."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".pointclip-write-test-", dir=directory)
    except OSError as error:
        raise OSError(f"Cannot write {what} to {str(directory)!r}: {error.strerror or error}.") from error
    os.close(handle)
    os.unlink(probe)


def _check_output_dir(output_dir) -> Path:
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise OSError(f"Cannot write evaluation results to {str(output_dir)!r}: it exists and is not a directory.")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"Cannot write evaluation results to {str(output_dir)!r}: cannot create the directory "
            f"({error.strerror or error})."
        ) from error
    _probe_directory(output_dir, "evaluation results")
    for name in (PREDICTIONS_FILE, REPORT_FILE, CONFUSION_IMAGE_FILE):
        if (output_dir / name).is_dir():
            raise OSError(f"Cannot write {name} in {str(output_dir)!r}: a directory of that name is in the way.")
    return output_dir


def _check_output_file(output_path) -> Path:
    output_path = Path(output_path)
    if output_path.is_dir():
        raise OSError(f"Cannot write predictions to {str(output_path)!r}: it is a directory; give a file path.")
    parent = output_path.parent
    if parent.exists() and not parent.is_dir():
        raise OSError(f"Cannot write predictions to {str(output_path)!r}: {str(parent)!r} is not a directory.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"Cannot write predictions to {str(output_path)!r}: cannot create {str(parent)!r} "
            f"({error.strerror or error})."
        ) from error
    _probe_directory(parent, "predictions")
    if output_path.exists():
        try:
            with open(output_path, "ab"):
                pass
        except OSError as error:
            raise OSError(f"Cannot write predictions to {str(output_path)!r}: {error.strerror or error}.") from error
    return output_path


def _list_files(paths_or_folder) -> list[str]:
    if isinstance(paths_or_folder, (str, os.PathLike)):
        path = Path(paths_or_folder)
        if path.is_dir():
            paths = sorted(
                str(child)
                for child in path.rglob("*")
                if child.suffix.lower() in SUPPORTED_EXTENSIONS
                and child.is_file()
                and not any(part.startswith(".") for part in child.relative_to(path).parts)
            )
            if not paths:
                raise ValueError(
                    f"No point-cloud files found in {str(path)!r} (looked for {', '.join(SUPPORTED_EXTENSIONS)})."
                )
            return paths
        paths = [path]
    elif isinstance(paths_or_folder, Iterable):
        paths = [Path(item) for item in paths_or_folder]
    else:
        raise TypeError(f"Expected a folder, a file or a list of files, got {type(paths_or_folder).__name__}.")
    if not paths:
        raise ValueError("No point-cloud files given (empty list).")
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"Point cloud file not found: {str(path)!r}.")
        if path.is_dir():
            raise ValueError(f"{str(path)!r} is a directory; pass it alone to classify the files inside it.")
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise ValueError(
                f"Unsupported point cloud file {str(path)!r}; supported extensions: {', '.join(SUPPORTED_EXTENSIONS)}."
            )
    return [str(path) for path in paths]


# ---------------------------------------------------------------------------------------------------------- setup


def _strip_volatile(value):
    if isinstance(value, dict):
        return {
            str(key): _strip_volatile(item)
            for key, item in value.items()
            if not str(key).startswith("_") and key not in ("transformers_version", "dtype", "torch_dtype")
        }
    if isinstance(value, (list, tuple)):
        return [_strip_volatile(item) for item in value]
    return value


def _sha256_json(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _config_sha256(config) -> str:
    return _sha256_json(_strip_volatile(config.to_dict()))


def _adapter_sha256(model) -> str | None:
    adapter = getattr(model, "adapter", None)
    if adapter is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(adapter.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _processor_settings(processor) -> dict:
    extractor = processor.feature_extractor
    settings = {
        "projection_style": extractor.projection_style,
        "num_points": extractor.num_points,
        "sampling": extractor.sampling,
        "normalize": extractor.normalize,
        "image_size": extractor.image_size,
        "clip_normalize": extractor.clip_normalize,
    }
    if extractor.clip_normalize:
        settings.update(image_mean=list(extractor.image_mean), image_std=list(extractor.image_std))
    if extractor.sampling == "random":
        settings["sampling_seed"] = extractor.seed
    return settings


def _fingerprint(model, processor, labels, k, data) -> dict:
    """What determines the predictions; two runs with equal fingerprints can share a predictions file."""
    return {
        "model": str(model.name_or_path),
        "config_sha256": _config_sha256(model.config),
        "adapter_sha256": _adapter_sha256(model),
        "dtype": str(model.dtype).replace("torch.", ""),
        "processor": _processor_settings(processor),
        "labels": list(labels),
        "top_k": k,
        "data": data,
    }


def _compact(value):
    """Inline small prompt data; replace large data by a hash and counts."""
    if value is None or len(json.dumps(value)) <= MAX_INLINE_PROMPT_CHARS:
        return value
    counts = (
        {"num_classes": len(value), "num_sentences": sum(len(v) for v in value.values())}
        if isinstance(value, dict)
        else {"num_entries": len(value)}
    )
    return {"sha256": _sha256_json(value), **counts}


def _setup(model, processor, labels, k, data, fingerprint, accelerator, batch_size, num_workers) -> dict:
    import transformers

    from . import __version__

    config = model.config
    return {
        "model_name_or_path": str(model.name_or_path),
        "clip_model_name_or_path": config.clip_model_name_or_path,
        "config_sha256": fingerprint["config_sha256"],
        "projection_style": config.projection_style,
        "num_views": config.num_views,
        "view_weights": None if config.view_weights is None else list(config.view_weights),
        "prompt_templates": _compact(list(config.prompt_templates or [])),
        "class_prompts": _compact(config.class_prompts),
        "label_names": list(labels),
        "use_adapter": bool(config.use_adapter),
        "adapter_sha256": fingerprint["adapter_sha256"],
        "dtype": fingerprint["dtype"],
        **_processor_settings(processor),
        "top_k": k,
        "dataset" if data["kind"] == "dataset" else "files": dict(data),
        "runtime": {
            "device": str(model.device),
            "num_processes": accelerator.num_processes if accelerator is not None else 1,
            "batch_size": batch_size,
            "num_workers": num_workers,
            "versions": {
                "pointclip_hf": __version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            },
        },
    }


def _dataset_name(dataset) -> str | None:
    info = getattr(dataset, "info", None)
    return getattr(info, "dataset_name", None) or getattr(info, "builder_name", None)


# ---------------------------------------------------------------------------------------------------------- accelerate


def _resolve_accelerator(accelerator):
    """The given accelerator, or one created when this process is one of several launched together; else None."""
    if accelerator is not None:
        return accelerator
    world_size = 1
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(name, "").strip().isdigit():
            world_size = int(os.environ[name])
            break
    try:
        from accelerate import Accelerator, PartialState
        from accelerate.utils import parse_flag_from_env
    except ImportError:
        if world_size > 1:
            raise ImportError(
                f"This process is one of {world_size} launched together, but accelerate is not installed; install it "
                "(pip install accelerate) to share the work, or run a single process."
            ) from None
        return None
    already = PartialState._shared_state != {}
    if not already and world_size <= 1:
        return None
    # On a machine without accelerators, accelerate only recognises a CPU multi-process launch when asked for the CPU.
    cpu = False if already else (parse_flag_from_env("ACCELERATE_USE_CPU") or not _has_accelerator_device())
    had_group = torch.distributed.is_available() and torch.distributed.is_initialized()
    if PartialState(cpu=cpu).num_processes <= 1:
        return None
    accelerator = Accelerator(cpu=cpu)
    if not had_group and torch.distributed.is_initialized():
        atexit.register(_destroy_process_group)  # else gloo may abort the interpreter at exit
    return accelerator


def _has_accelerator_device() -> bool:
    if hasattr(torch, "accelerator"):
        return torch.accelerator.is_available()
    return torch.cuda.is_available()


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.type == "cpu" or (a.index or 0) == (b.index or 0))


def _is_main(accelerator) -> bool:
    return accelerator is None or accelerator.is_main_process


def _agree(accelerator, error: BaseException | None) -> None:
    """Raise on every process when the setup failed on any (instead of leaving the others waiting)."""
    if accelerator is None or accelerator.num_processes == 1:
        if error is not None:
            raise error
        return
    from accelerate.utils import gather_object

    messages = gather_object([None if error is None else f"{type(error).__name__}: {error}"])
    if error is not None:
        raise error
    failed = [(rank, message) for rank, message in enumerate(messages) if message is not None]
    if failed:
        rank, message = failed[0]
        raise RuntimeError(f"Process {rank} failed while setting up: {message}")


# ---------------------------------------------------------------------------------------------------------- data


def _prepare_one(extractor, cloud, what: str) -> torch.Tensor:
    try:
        return extractor.prepare_points(cloud)[0]
    except (ValueError, TypeError) as error:
        try:
            wrapped = type(error)(f"{what}: {error}")
        except Exception:  # noqa: BLE001 - an exception type with another signature: keep it as it is
            raise error from None
        raise wrapped from error


class _RowSource(torch.utils.data.Dataset):
    """Rows `indices` of a numpy-formatted `datasets.Dataset` -> `(index, prepared points [N, 3], label)`."""

    def __init__(self, dataset, indices: range, extractor, num_labels: int):
        self.dataset, self.indices, self.extractor, self.num_labels = dataset, indices, extractor, num_labels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = self.indices[position]
        row = self.dataset[index]
        label = int(row["label"])
        if not 0 <= label < self.num_labels:
            raise ValueError(f"Dataset row {index} has label {label}, outside the {self.num_labels} classes.")
        return index, _prepare_one(self.extractor, row["points"], f"Dataset row {index}"), label


class _FileSource(torch.utils.data.Dataset):
    """Files `paths[indices]` -> `(index, prepared points [N, 3])`."""

    def __init__(self, paths: list[str], indices: range, extractor):
        self.paths, self.indices, self.extractor = paths, indices, extractor

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = self.indices[position]
        path = self.paths[index]
        return index, _prepare_one(self.extractor, load_point_cloud(path), f"Point cloud file {path!r}")


# ---------------------------------------------------------------------------------------------------------- files


def _encode(value: dict) -> bytes:
    return json.dumps(value).encode("utf-8") + b"\n"


def _shard_path(path: Path, rank: int) -> Path:
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def _shard_files(path: Path) -> dict[int, Path]:
    found = {}
    prefix, suffix = f"{path.stem}.rank", path.suffix
    for candidate in path.parent.glob(f"{path.stem}.rank*{suffix}"):
        middle = candidate.name[len(prefix) : len(candidate.name) - len(suffix)]
        if middle.isdigit():
            found[int(middle)] = candidate
    return found


def _short(value, limit: int = 160) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _differences(found: dict, expected: dict, prefix: str = "") -> list[str]:
    differences = []
    for key in list(expected) + [key for key in found if key not in expected]:
        old, new = found.get(key), expected.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            differences.extend(_differences(old, new, f"{prefix}{key}."))
        else:
            differences.append(f"{prefix}{key}: {_short(old)} in the file, {_short(new)} now")
    return differences


def _read_header(path: Path) -> dict | None:
    """The header of a predictions file; None when the file is empty or its header line was cut short."""
    with open(path, "rb") as handle:
        first = handle.readline()
    if not first.endswith(b"\n"):
        if not first.strip() or first.startswith(b'{"header"'):
            return None
        raise ValueError(f"{str(path)!r} is not a PointCLIP predictions file (no header line); it was not modified.")
    try:
        header = json.loads(first)["header"]
        if not isinstance(header, dict) or not str(header.get("format", "")).startswith("pointclip-predictions/"):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"{str(path)!r} is not a PointCLIP predictions file (its first line is not our header); it was not "
            "modified. Choose another output location, or pass resume=False to overwrite it."
        ) from None
    return header


def _scan(path: Path, header: dict, expected: Sequence[int], consume: Callable[[dict], None] | None) -> tuple[int, int]:
    """
    Check an existing predictions file against `header` and read its records, which must be the first indices of
    `expected`; `consume` gets each (when given). Returns (bytes to keep, number of records). Raises without touching
    the file when it belongs to another run or is damaged; a last line without newline is not counted.
    """
    found = _read_header(path)
    if found is None:
        return 0, 0
    if found != header:
        raise ValueError(
            f"{str(path)!r} holds predictions of a different run, so it cannot be resumed: "
            + "; ".join(_differences(found, header))
            + ". The file was not modified; pass resume=False to overwrite it, or choose another output location."
        )
    keep, count = 0, 0
    with open(path, "rb") as handle:
        keep = len(handle.readline())
        for number, line in enumerate(handle, start=2):
            if not line.endswith(b"\n"):
                break  # the run died while writing this line: drop it
            try:
                record = json.loads(line)
                index = record["index"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(
                    f"{str(path)!r} is damaged at line {number} (not a prediction record); it was not modified."
                ) from None
            if count >= len(expected) or index != expected[count]:
                wanted = f"cloud {expected[count]}" if count < len(expected) else "no further record"
                raise ValueError(
                    f"{str(path)!r} is damaged at line {number}: a record of cloud {index} where {wanted} was "
                    "expected; it was not modified."
                )
            if consume is not None:
                consume(record)
            count += 1
            keep += len(line)
    return keep, count


class _Writer:
    """Appends records to a predictions file, flushing after each batch."""

    def __init__(self, path: Path, header: dict, keep: int):
        if keep == 0:
            self.handle = open(path, "wb")
            self.handle.write(_encode({"header": header}))
            self.handle.flush()
        else:
            self.handle = open(path, "r+b")
            self.handle.truncate(keep)
            self.handle.seek(keep)

    def write(self, records: list[dict]) -> None:
        self.handle.write(b"".join(_encode(record) for record in records))
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _merge(final: Path, shards: list[Path], header: dict, num_items: int) -> None:
    """Merge shard files (each sorted by index) into `final` by index, streaming; check that the indices are 0..n-1."""

    def records(path: Path):
        with open(path, "rb") as handle:
            handle.readline()
            for line in handle:
                if not line.endswith(b"\n"):
                    raise ValueError(f"Shard file {str(path)!r} ends with an incomplete line.")
                yield json.loads(line)["index"], line

    temporary = final.with_name(f".{final.name}.merging-{os.getpid()}")
    try:
        with open(temporary, "wb") as out:
            out.write(_encode({"header": header}))
            expected = 0
            for index, line in heapq.merge(*(records(path) for path in shards), key=lambda item: item[0]):
                if index != expected:
                    raise RuntimeError(f"Merging the shard files: found cloud {index} where {expected} was expected.")
                out.write(line)
                expected += 1
            if expected != num_items:
                raise RuntimeError(f"Merging the shard files: {expected} records for {num_items} clouds.")
        os.replace(temporary, final)
    finally:
        if temporary.exists():
            temporary.unlink()
    for path in shards:
        path.unlink()


# ---------------------------------------------------------------------------------------------------------- loop


def _shard_world_size(path: Path) -> int | None:
    shard = (_read_header(path) or {}).get("shard")
    return shard.get("world_size") if isinstance(shard, dict) else None


def _open_output(path: Path, header: dict, shard: range, num_items: int, rank: int, world: int, consume):
    """Prepare this process's predictions file. Returns (file, bytes to keep, records done) or None when the
    finished `path` already holds everything (its records of this shard are passed to `consume`)."""
    shard_files = _shard_files(path)
    if world == 1:
        if shard_files:
            sizes = {str(_shard_world_size(other)) for other in shard_files.values()}
            raise ValueError(
                f"Found shard files {sorted(str(other) for other in shard_files.values())} of an interrupted run of "
                f"{' or '.join(sorted(sizes))} processes; resume it with that many processes, or pass resume=False."
            )
        if path.exists():
            keep, done = _scan(path, header, shard, consume)
            return path, keep, done
        return path, 0, 0
    if path.exists():

        def mine(record):
            if record["index"] % world == rank:
                consume(record)

        _, done = _scan(path, header, range(num_items), mine)
        if done == num_items:
            return None
        raise ValueError(
            f"{str(path)!r} holds an unfinished run of a single process ({done} of {num_items} clouds); resume it with "
            "one process, or pass resume=False."
        )
    shard_header = {**header, "shard": {"rank": rank, "world_size": world}}
    for other in shard_files.values():
        other_world = _shard_world_size(other)
        if other_world is not None and other_world != world:
            raise ValueError(
                f"{str(other)!r} is a shard of an interrupted run of {other_world} processes, but this run has "
                f"{world}; resume with {other_world} processes, or pass resume=False."
            )
    mine_path = _shard_path(path, rank)
    if mine_path.exists():
        keep, done = _scan(mine_path, shard_header, shard, consume)
        return mine_path, keep, done
    return mine_path, 0, 0


def _run(
    *,
    model,
    processor,
    make_source,
    num_items: int,
    labels: list[str],
    k: int,
    batch_size: int,
    num_workers: int,
    path: Path | None,
    header: dict,
    resume: bool,
    accelerator,
    progress: bool,
    desc: str,
    make_records,
    consume,
) -> None:
    """Predict every index of this process's shard that is not done yet, writing and consuming the records."""
    from tqdm.auto import tqdm

    distributed = accelerator is not None and accelerator.num_processes > 1
    rank, world = (accelerator.process_index, accelerator.num_processes) if distributed else (0, 1)
    shard = range(rank, num_items, world)
    shard_header = header if world == 1 else {**header, "shard": {"rank": rank, "world_size": world}}
    if path is not None and not resume:  # start afresh: remove what an earlier run left
        if _is_main(accelerator):
            for stale in [*([path] if world > 1 else []), *_shard_files(path).values()]:
                if stale.exists():
                    stale.unlink()
        if distributed:
            accelerator.wait_for_everyone()

    target, keep, done, error = None, 0, 0, None
    try:
        if path is not None:
            if not resume:
                target = path if world == 1 else _shard_path(path, rank)
            else:
                opened = _open_output(path, header, shard, num_items, rank, world, consume)
                if opened is None:
                    done = len(shard)
                else:
                    target, keep, done = opened
    except Exception as caught:  # noqa: BLE001 - re-raised on every process by _agree
        error = caught
    _agree(accelerator, error)

    remaining = shard[done:]
    writer = None
    if target is not None:
        writer = _Writer(target, shard_header, keep)
    try:
        if len(remaining):
            if accelerator is not None and not _same_device(model.device, accelerator.device):
                model.to(accelerator.device)
            bar = tqdm(
                total=len(shard),
                initial=done,
                desc=desc,
                unit="cloud",
                disable=not progress or not _is_main(accelerator),
            )
            source = make_source(remaining)
            _predict(model, processor, source, labels, k, batch_size, num_workers, writer, make_records, consume, bar)
    finally:
        if writer is not None:
            writer.close()
    if distributed:
        accelerator.wait_for_everyone()
        if target is not None and accelerator.is_main_process:  # (None: predictions.jsonl was already complete)
            shards = _shard_files(path)
            missing = [r for r in range(world) if r not in shards]
            if missing:
                raise RuntimeError(
                    f"The shard files of processes {missing} are not in {str(path.parent)!r}: the output location "
                    "must be on a file system that all processes share."
                )
            _merge(path, [shards[r] for r in range(world)], header, num_items)
        accelerator.wait_for_everyone()


def _predict(model, processor, source, labels, k, batch_size, num_workers, writer, make_records, consume, bar):
    device = model.device
    loader = torch.utils.data.DataLoader(
        source, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    text_embeds = label_embeddings(model, processor, labels)
    was_training = model.training
    model.eval()
    try:
        with bar, torch.inference_mode():
            for batch in loader:
                indices = batch[0].tolist()
                pixel_values = processor.feature_extractor.render(batch[1].to(device, non_blocking=True))
                logits = model(pixel_values=pixel_values, text_embeds=text_embeds).logits
                top_scores, top_ids = logits.float().softmax(dim=-1).topk(k, dim=-1)
                records = make_records(indices, batch, top_scores.tolist(), top_ids.tolist())
                if writer is not None:
                    writer.write(records)
                for record in records:
                    consume(record)
                bar.update(len(indices))
    finally:
        model.train(was_training)


__all__ = ["EvaluationReport", "classify_files", "evaluate", "save_confusion_matrix_image"]
