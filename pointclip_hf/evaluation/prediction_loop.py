"""
The batched predict loop shared by [`evaluate`] and [`classify_files`]: this process's share of the clouds, less what
its predictions file already holds, streamed through [`~cloud_stream.stream_batches`] (which reads, prepares and
renders them); the model runs under `torch.inference_mode()`. Each batch's records are appended to this process's
predictions file (when there is one) and passed to a `consume` callback, so only one batch of pixels and logits exists
at a time.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..cloud_stream import CloudBatch, process_share, progress_bar, stream_batches
from ..model.modeling_pointclip import check_finite_logits, check_scores_discriminate
from ..model.pipeline_pointclip import label_embeddings, model_label_order, top_k_scores
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
MakeRecords = Callable[[CloudBatch, list[list[float]], list[list[int]]], list[dict]]


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
            The source of the given indices (a [`~cloud_stream.FileSource`] or [`~cloud_stream.RowSource`]).
        make_records (`Callable`):
            `(batch, top_scores, top_ids)` -> one record per cloud of the [`~cloud_stream.CloudBatch`], each with its
            `index`.
        consume (`Callable[[dict], None]`):
            Called with every record of this process's shard, those read back from the file included.
    """
    rank, world_size = rank_and_world_size(run.accelerator)
    shard = process_share(range(run.num_items), rank, world_size)
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
    accelerator = run.accelerator
    if accelerator is not None and not same_device(run.model.device, accelerator.device):
        run.model.to(accelerator.device)
    bar = progress_bar(len(shard), done, run.desc, run.progress and is_main(accelerator))
    _predict(run, make_source(shard[done:]), make_records, consume, writer, bar)


def _predict(
    run: PredictionRun, source, make_records: MakeRecords, consume: Consume, writer: PredictionsWriter | None, bar
) -> None:
    model, processor = run.model, run.processor
    scored, columns = model_label_order(model, run.labels)
    text_embeds = label_embeddings(model, processor, scored)
    check_scores_discriminate(model)
    was_training = model.training
    model.eval()
    try:
        with bar, torch.inference_mode():
            batches = stream_batches(source, processor.feature_extractor, model.device, run.batch_size, run.num_workers)
            for batch in batches:
                output = model(pixel_values=batch.pixel_values, text_embeds=text_embeds)
                check_finite_logits(output.logits, model, batch.names)
                logits = output.logits if columns is None else output.logits[:, columns]
                if run.test_time_cache is not None:
                    logits = run.test_time_cache.adapt(output, logits)
                top_scores, top_ids = top_k_scores(logits, run.top_k)
                records = make_records(batch, top_scores.tolist(), top_ids.tolist())
                if writer is not None:
                    writer.write(records)
                if run.test_time_cache is not None:
                    run.test_time_cache.save(len(records), writer)
                for record in records:
                    consume(record)
                bar.update(len(batch.indices))
    finally:
        model.train(was_training)


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
