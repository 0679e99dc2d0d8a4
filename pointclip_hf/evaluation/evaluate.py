"""[`evaluate`]: accuracy, per-class accuracy and confusion matrix of a model on a labelled dataset."""

import os
from collections.abc import Sequence

import numpy as np
from datasets import Value

from ..cloud_stream import RowSource
from ..data import check_point_cloud_dataset
from ..model.pipeline_pointclip import ranked_labels
from ..model.processing_pointclip import processor_for_model
from .checks import check_loop_arguments, check_model_labels, check_output_dir, check_processor, dataset_labels
from .distributed import is_main, resolve_accelerator, run_device, sum_across_processes, wait_for_everyone
from .fingerprint import dataset_fingerprint, dataset_name, run_fingerprint, run_setup
from .prediction_loop import PredictionRun, run_predictions
from .predictions_file import PREDICTIONS_FILE, make_header
from .report import EvaluationReport, build_report
from .test_time_cache_run import new_test_time_cache_run

DEFAULT_EVAL_TOP_K = 5


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
    test_time_cache=False,
) -> EvaluationReport:
    """
    Evaluate a model on a labelled dataset. A cloud's features, logits and scores are bitwise identical whatever else
    is in its batch: any `batch_size`, `num_workers`, resume point or process count (CPU; see the README for CUDA).

    Args:
        model ([`PointCLIPModel`]):
            The model to evaluate.
        dataset (`datasets.Dataset`):
            One split: `points` (`(N, 3+)` per row, sizes may differ) and `label` (`ClassLabel`) columns.
        batch_size (`int`, *optional*, defaults to 32):
            Clouds rendered and encoded at once.
        num_workers (`int`, *optional*, defaults to 0):
            DataLoader worker processes that read, normalise and sample the clouds.
        output_dir (`str` or `os.PathLike`, *optional*):
            Where to write `predictions.jsonl` (incrementally), `report.json` and `confusion_matrix.png`.
        label_names (`Sequence[str]`, *optional*):
            The class names to prompt with, one per `ClassLabel` class in its order (default: the dataset's
            `ClassLabel` names; required when `label` is a plain integer column). Models with an adapter need
            exactly their `config.label_names`.
        progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm progress bar (on the main process).
        resume (`bool`, *optional*, defaults to `True`):
            Continue an interrupted run from `output_dir/predictions.jsonl` (see the package documentation); `False`
            overwrites it.
        accelerator (`accelerate.Accelerator`, *optional*):
            Shares the work across processes (the model is moved to its device); by default one is created when the
            script runs under `accelerate launch` / `torchrun` with several processes.
        top_k (`int`, *optional*, defaults to 5):
            Number of best labels stored per cloud in the predictions file (`None`: all).
        processor ([`PointCLIPProcessor`], *optional*):
            Defaults to `processor_for_model(model)`.
        test_time_cache (`bool`, `dict` or [`TestTimeCacheConfig`], *optional*, defaults to `False`):
            Adapt to the clouds in dataset order (TDA, see `pointclip_hf.test_time_cache`): outside the guarantee above.

    Returns:
        [`EvaluationReport`]: the same on every process.
    """
    check_loop_arguments(batch_size, num_workers, top_k)
    dataset = check_point_cloud_dataset(dataset)
    labels, class_names = dataset_labels(dataset, label_names)
    check_model_labels(model, labels, "the dataset's classes" if label_names is None else "the given label_names")
    output_dir = check_output_dir(output_dir) if output_dir is not None else None
    processor = processor_for_model(model, processor)
    check_processor(model, processor)
    accelerator = resolve_accelerator(accelerator)
    k = len(labels) if top_k is None else min(top_k, len(labels))
    data = dataset_fingerprint(dataset, class_names)
    fingerprint = run_fingerprint(model, processor, labels, k, data, run_device(model, accelerator))
    adaptation = new_test_time_cache_run(test_time_cache, len(labels), fingerprint)
    run = PredictionRun(model=model, processor=processor, labels=labels, top_k=k, num_items=len(dataset),
                        batch_size=batch_size, num_workers=num_workers,
                        path=output_dir / PREDICTIONS_FILE if output_dir is not None else None,
                        header=make_header("evaluate", fingerprint), resume=resume, accelerator=accelerator,
                        progress=progress, desc="Evaluating", test_time_cache=adaptation)  # fmt: skip
    confusion = _confusion_matrix(run, dataset)
    report = build_report(confusion, labels, _setup(run, dataset))
    if output_dir is not None and is_main(accelerator):
        report.save(output_dir)
    wait_for_everyone(accelerator)
    return report


def _confusion_matrix(run: PredictionRun, dataset) -> np.ndarray:
    """Predict every row (or read it back from the predictions file) and count, summed over the processes."""
    labels = run.labels
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    ids = {name: i for i, name in enumerate(labels)}
    paths = list(dataset["path"]) if dataset.features.get("path") == Value("string") else None

    def count(record):
        confusion[ids[record["label"]], ids[record["prediction"]]] += 1

    def make_records(batch, top_scores, top_ids):
        return [
            _record(labels, index, paths, label_id, top_scores[row], top_ids[row])
            for row, (index, label_id) in enumerate(zip(batch.indices, batch.labels))
        ]

    formatted = dataset.with_format("numpy", columns=["points", "label"])
    extractor = run.processor.feature_extractor
    run_predictions(
        run,
        make_source=lambda indices: RowSource(formatted, indices, extractor, len(labels)),
        make_records=make_records,
        consume=count,
    )
    return sum_across_processes(run.accelerator, confusion)


def _record(labels: list[str], index: int, paths: list[str] | None, label_id: int, top_scores: list[float],
            top_ids: list[int]) -> dict:  # fmt: skip
    """The predictions-file line of one evaluated cloud (naming its file when the dataset has `paths`)."""
    prediction_id = top_ids[0]
    return {
        "index": index,
        **({"path": paths[index]} if paths is not None else {}),
        "label": labels[label_id],
        "label_id": label_id,
        "prediction": labels[prediction_id],
        "prediction_id": prediction_id,
        "score": top_scores[0],
        "correct": label_id == prediction_id,
        "top_k": ranked_labels(labels, top_ids, top_scores),
    }


def _setup(run: PredictionRun, dataset) -> dict:
    setup = run_setup(
        run.model, run.processor, run.header["fingerprint"], run.accelerator, run.batch_size, run.num_workers
    )
    setup["dataset"].update(name=dataset_name(dataset), split=None if dataset.split is None else str(dataset.split))
    if run.test_time_cache is not None:
        setup["test_time_cache"] = run.header["fingerprint"]["test_time_cache"]
    return setup
