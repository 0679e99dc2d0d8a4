"""
The batched predict loop shared by [`evaluate`] and [`classify_files`].

A `torch.utils.data.DataLoader` with `num_workers` worker processes reads each cloud (a dataset row or a file) and
prepares it on the CPU with the processor's `prepare_points` (normalisation and sampling), one cloud at a time, so
clouds of different sizes are fine and a cloud's result never depends on its batch, worker or process. The prepared
clouds are stacked into `(batch, points, 3)`; the main process renders the views on the model's device and runs the
model under `torch.inference_mode()`. Each batch's records are appended to this process's predictions file (when
there is one) and passed to a `consume` callback, so only one batch of pixels and logits exists at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..pipeline_pointclip import label_embeddings, model_label_order
from ..point_cloud_io import PointCloudFileError
from ..score_checks import check_finite_logits, check_scores_discriminate
from .distributed import agree, is_main, rank_and_world_size, same_device
from .predictions_file import (
    Consume,
    PredictionsWriter,
    merge_shards,
    open_for_resume,
    shard_files,
    shard_header,
    shard_path,
)
from .test_time_cache_run import TestTimeCacheRun

MakeSource = Callable[[range], torch.utils.data.Dataset]
MakeRecords = Callable[[list[int], list, list[list[float]], list[list[int]]], list[dict]]


@dataclass
class PredictionRun:
    """
    One run of the loop.

    Args:
        model ([`PointCLIPModel`]):
            The model; moved to the accelerator's device when there is work left.
        processor ([`PointCLIPProcessor`]):
            Prepares the points (in the loader) and renders the views (on the model's device).
        labels (`list[str]`):
            The candidate labels.
        top_k (`int`):
            The number of best labels per cloud, at most `len(labels)`.
        num_items (`int`):
            The number of clouds of the whole run, over all processes.
        batch_size (`int`), num_workers (`int`):
            The loader's settings.
        path (`Path`, *optional*):
            The predictions file; `None` writes none.
        header (`dict`):
            The single-process header of the predictions file (see `predictions_file.make_header`).
        resume (`bool`):
            Continue from what an earlier run left in `path` (else start afresh).
        accelerator (`accelerate.Accelerator`, *optional*):
            Shares the work across processes.
        progress (`bool`):
            Show a tqdm bar on the main process, labelled `desc`.
        test_time_cache ([`TestTimeCacheRun`], *optional*):
            Adapts the logits in arrival order (TDA), saved beside the predictions file; `None`: off.
    """

    model: object
    processor: object
    labels: list[str]
    top_k: int
    num_items: int
    batch_size: int
    num_workers: int
    path: Path | None
    header: dict
    resume: bool
    accelerator: object
    progress: bool
    desc: str
    test_time_cache: TestTimeCacheRun | None = None


def run_predictions(run: PredictionRun, make_source: MakeSource, make_records: MakeRecords, consume: Consume) -> None:
    """
    Predict every index of this process's shard that is not done yet, writing and consuming the records; with
    several processes, the main process then merges the shard files into `run.path`.

    Args:
        run ([`PredictionRun`]):
            What to run.
        make_source (`Callable[[range], torch.utils.data.Dataset]`):
            The source of the given indices; its items are `(index, points, ...)` with points a `torch.Tensor` of
            shape `(points, 3)`.
        make_records (`Callable`):
            `(indices, batch, top_scores, top_ids)` -> one record per cloud of the batch, each with its `index`.
        consume (`Callable[[dict], None]`):
            Called with every record of this process's shard, those read back from the file included.
    """
    rank, world_size = rank_and_world_size(run.accelerator)
    shard = range(rank, run.num_items, world_size)
    if run.path is not None and not run.resume:
        _remove_earlier_outputs(run.path, world_size, run.accelerator)
    target, keep, done = _open_output(run, shard, rank, world_size, consume)
    writer = None if target is None else PredictionsWriter(target, shard_header(run.header, rank, world_size), keep)
    try:
        if done < len(shard):
            _predict_remaining(run, shard, done, make_source, make_records, consume, writer)
    finally:
        if writer is not None:
            writer.close()
    if world_size > 1:
        _merge_on_main_process(run, world_size, merge=target is not None)


def _remove_earlier_outputs(path: Path, world_size: int, accelerator) -> None:
    if is_main(accelerator):
        for stale in [*([path] if world_size > 1 else []), *shard_files(path).values()]:
            if stale.exists():
                stale.unlink()
    if world_size > 1:
        accelerator.wait_for_everyone()


def _open_output(run: PredictionRun, shard: range, rank: int, world_size: int, consume: Consume):
    """`(file to append to or None, bytes of it to keep, records done)`; a failure on any process raises on all."""
    target, keep, done, error = None, 0, 0, None
    try:
        if run.test_time_cache is not None:
            run.test_time_cache.prepare(run.path, run.header, run.resume, rank, world_size)
        if run.path is not None and not run.resume:
            target = run.path if world_size == 1 else shard_path(run.path, rank)
        elif run.path is not None:
            opened = open_for_resume(run.path, run.header, shard, run.num_items, rank, world_size, consume)
            if opened is None:
                done = len(shard)
            else:
                target, keep, done = opened
        if run.test_time_cache is not None:
            run.test_time_cache.check_resumed(done)
    except Exception as caught:  # noqa: BLE001 - re-raised on every process by agree
        error = caught
    agree(run.accelerator, error)
    return target, keep, done


def _predict_remaining(
    run: PredictionRun,
    shard: range,
    done: int,
    make_source: MakeSource,
    make_records: MakeRecords,
    consume: Consume,
    writer: PredictionsWriter | None,
) -> None:
    from huggingface_hub.utils import tqdm

    accelerator = run.accelerator
    if accelerator is not None and not same_device(run.model.device, accelerator.device):
        run.model.to(accelerator.device)
    bar = tqdm(
        total=len(shard),
        initial=done,
        desc=run.desc,
        unit="cloud",
        disable=not run.progress or not is_main(accelerator),
    )
    _predict(run, make_source(shard[done:]), make_records, consume, writer, bar)


def _predict(
    run: PredictionRun, source, make_records: MakeRecords, consume: Consume, writer: PredictionsWriter | None, bar
) -> None:
    model, processor = run.model, run.processor
    device = model.device
    loader = torch.utils.data.DataLoader(
        source, batch_size=run.batch_size, shuffle=False, num_workers=run.num_workers, pin_memory=device.type == "cuda"
    )
    scored, columns = model_label_order(model, run.labels)
    text_embeds = label_embeddings(model, processor, scored)
    check_scores_discriminate(model)
    was_training = model.training
    model.eval()
    try:
        with bar, torch.inference_mode():
            for batch in _worker_errors_as_raised(loader):
                indices = batch[0].tolist()
                names = [source.describe(index) for index in indices]
                pixel_values = processor.feature_extractor.render(batch[1].to(device, non_blocking=True), names)
                output = model(pixel_values=pixel_values, text_embeds=text_embeds)
                check_finite_logits(output.logits, model, names)
                logits = output.logits if columns is None else output.logits[:, columns]
                if run.test_time_cache is not None:
                    logits = run.test_time_cache.adapt(output, logits)
                top_scores, top_ids = logits.float().softmax(dim=-1).topk(run.top_k, dim=-1)
                records = make_records(indices, batch, top_scores.tolist(), top_ids.tolist())
                if writer is not None:
                    writer.write(records)
                if run.test_time_cache is not None:
                    run.test_time_cache.save(len(records), writer)
                for record in records:
                    consume(record)
                bar.update(len(indices))
    finally:
        model.train(was_training)


def _worker_errors_as_raised(loader):
    """Iterate `loader`, raising an error of a worker process as the worker raised it: torch raises it again with the
    worker's whole traceback in its message, which would turn one bad file into many lines."""
    try:
        yield from loader
    except (ValueError, TypeError, OSError) as error:
        message = str(error)
        if "Original Traceback" not in message:
            raise
        original = message.strip().splitlines()[-1].partition(": ")[2]
        try:
            unwrapped = type(error)(original)
        except Exception:  # noqa: BLE001 - an exception type with another signature: keep it as it is
            raise error from None
        raise unwrapped from None


def _merge_on_main_process(run: PredictionRun, world_size: int, merge: bool) -> None:
    """Wait for every shard; then the main process merges them (`merge=False`: `run.path` was already complete)."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    if merge and accelerator.is_main_process:
        shards = shard_files(run.path)
        missing = [r for r in range(world_size) if r not in shards]
        if missing:
            raise RuntimeError(
                f"The shard files of processes {missing} are not in {str(run.path.parent)!r}: the output location "
                "must be on a file system that all processes share."
            )
        merge_shards(run.path, [shards[r] for r in range(world_size)], run.header, run.num_items)
    accelerator.wait_for_everyone()


def _prepare_one(extractor, cloud, what: str) -> torch.Tensor:
    """Prepare one cloud (or read and prepare one file); a `ValueError` or `TypeError` is raised again with `what` in
    front of its message, unless it names the cloud already."""
    try:
        return extractor.prepare_points(cloud, names=[what])[0]
    except (ValueError, TypeError) as error:
        if str(error).startswith(what) or isinstance(error, PointCloudFileError):
            raise
        try:
            wrapped = type(error)(f"{what}: {error}")
        except Exception:  # noqa: BLE001 - an exception type with another signature: keep it as it is
            raise error from None
        raise wrapped from error


class RowSource(torch.utils.data.Dataset):
    """
    Rows of a labelled dataset, prepared for the model.

    Args:
        dataset (`datasets.Dataset`):
            Formatted as numpy, with `points` and `label` columns.
        indices (`range`):
            The rows to read.
        extractor ([`PointCloudProcessor`]):
            Prepares the points.
        num_labels (`int`):
            The number of classes; a label outside `[0, num_labels)` raises.

    Items are `(index, points, label)` with points a `torch.Tensor` of shape `(points, 3)`.
    """

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
        return index, _prepare_one(self.extractor, row["points"], self.describe(index)), label

    def describe(self, index: int) -> str:
        """How messages name row `index`."""
        return f"Dataset row {index}"


class FileSource(torch.utils.data.Dataset):
    """
    Point-cloud files, read and prepared for the model.

    Args:
        paths (`list[str]`):
            All files of the run.
        indices (`range`):
            The positions in `paths` to read.
        extractor ([`PointCloudProcessor`]):
            Prepares the points.

    Items are `(index, points)` with points a `torch.Tensor` of shape `(points, 3)`.
    """

    def __init__(self, paths: list[str], indices: range, extractor):
        self.paths, self.indices, self.extractor = paths, indices, extractor

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = self.indices[position]
        path = self.paths[index]
        return index, _prepare_one(self.extractor, path, self.describe(index))  # read there, by its format's up axis

    def describe(self, index: int) -> str:
        """How messages name the file at position `index`."""
        return f"Point cloud file {self.paths[index]!r}"
