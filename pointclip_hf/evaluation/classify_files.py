"""[`classify_files`]: the best labels of every point-cloud file in a folder or a list."""

import os

from ..cloud_stream import FileSource, list_point_cloud_files
from ..model.pipeline_pointclip import ranked_labels
from ..model.processing_pointclip import processor_for_model
from ..model.prompts import check_labels
from .checks import check_loop_arguments, check_model_labels, check_output_file, check_processor
from .distributed import gather_records, resolve_accelerator, run_device
from .fingerprint import files_fingerprint, run_fingerprint
from .prediction_loop import PredictionRun, run_predictions
from .predictions_file import make_header
from .test_time_cache_run import new_test_time_cache_run


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
    test_time_cache=False,
) -> list[dict]:
    """
    Classify point-cloud files against candidate labels.

    A cloud's view features, logits and scores are bitwise identical whatever else is in its batch: any
    `batch_size`, position, `num_workers`, resume point or number of processes (on CPU; see the README for CUDA).

    Args:
        model ([`PointCLIPModel`]):
            The model.
        paths_or_folder (`str`, `os.PathLike` or `Iterable` of them):
            A folder (searched recursively, in sorted order, for files with a supported extension), one file, or a
            list of files.
        labels (`list[str]` or `str`):
            Candidate class names (or a comma-separated string); `None` uses an adapter model's `config.label_names`.
        output_path (`str` or `os.PathLike`, *optional*):
            A JSON-lines file written incrementally (and resumable, see the package documentation).
        top_k (`int`, *optional*):
            Number of best labels kept per file (`None`: all).
        batch_size, num_workers, progress, resume, accelerator, processor, test_time_cache:
            As in [`evaluate`]. With `test_time_cache` on, a file's scores depend on the files before it (in the
            sorted order), outside the guarantee above.

    Returns:
        `list[dict]`: one record per file, in order: `{"index", "path", "prediction", "score", "top_k": [{"label",
        "score"}, ...]}` (`top_k` is what `model.classify` returns for the file); the same list on every process.
    """
    check_loop_arguments(batch_size, num_workers, top_k)
    labels = _candidate_labels(model, labels)
    paths = list_point_cloud_files(paths_or_folder)
    output_path = check_output_file(output_path) if output_path is not None else None
    processor = processor_for_model(model, processor)
    check_processor(model, processor)
    accelerator = resolve_accelerator(accelerator)
    k = len(labels) if top_k is None else min(top_k, len(labels))
    fingerprint = {}  # only a predictions file is checked against it: no hashing of weights and files without one
    if output_path is not None:
        device = run_device(model, accelerator)
        fingerprint = run_fingerprint(model, processor, labels, k, files_fingerprint(paths), device)
    adaptation = new_test_time_cache_run(test_time_cache, len(labels), fingerprint)
    run = PredictionRun(
        model=model,
        processor=processor,
        labels=labels,
        top_k=k,
        num_items=len(paths),
        batch_size=batch_size,
        num_workers=num_workers,
        path=output_path,
        header=make_header("classify_files", fingerprint),
        resume=resume,
        accelerator=accelerator,
        progress=progress,
        desc="Classifying",
        test_time_cache=adaptation,
    )
    return _classify(run, paths)


def _candidate_labels(model, labels) -> list[str]:
    labels = check_labels(model.config.label_names if labels is None else labels)
    check_model_labels(model, labels, "the given labels")
    return labels


def _classify(run: PredictionRun, paths: list[str]) -> list[dict]:
    """Predict every file (or read it back from the predictions file); every process gets all records."""
    labels = run.labels
    results = []

    def make_records(batch, top_scores, top_ids):
        return [
            {
                "index": index,
                "path": paths[index],
                "prediction": labels[top_ids[row][0]],
                "score": top_scores[row][0],
                "top_k": ranked_labels(labels, top_ids[row], top_scores[row]),
            }
            for row, index in enumerate(batch.indices)
        ]

    extractor = run.processor.feature_extractor
    run_predictions(
        run,
        make_source=lambda indices: FileSource(paths, indices, extractor),
        make_records=make_records,
        consume=results.append,
    )
    return gather_records(run.accelerator, results)
