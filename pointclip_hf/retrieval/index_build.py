"""[`build_index`]: embed every cloud of a folder, a list of files or a dataset into an index folder, streaming,
resumable and shared across processes as [`pointclip_hf.evaluate`] is.

The clouds are streamed by [`~cloud_stream.stream_batches`] (read and prepared by `num_workers` workers, rendered on
the model's device a batch at a time), encoded, and their unit embeddings appended to the folder as atomic chunk
files. An interrupted build resumes from the chunks it left (whatever the number of processes then); process `r` of
`W` embeds every `W`-th cloud still missing, and the main process merges the chunks into `embeddings.safetensors` and
`items.json` at the end.
"""

import os
from pathlib import Path

import torch

from ..cloud_stream import FileSource, RowSource, list_point_cloud_files, process_share, progress_bar, stream_batches
from ..embeddings import embeddings_from_view_features
from ..evaluation.checks import check_loop_arguments, check_output_dir, check_processor
from ..evaluation.distributed import agree, is_main, rank_and_world_size, resolve_accelerator, wait_for_everyone
from ..evaluation.fingerprint import dataset_fingerprint, files_fingerprint, run_fingerprint
from ..model.processing_pointclip import processor_for_model
from .index_files import (
    FORMAT,
    IndexFileError,
    read_chunks,
    read_header,
    remove_outputs,
    write_chunk,
    write_complete,
    write_header,
)
from .point_cloud_index import PointCloudIndex

CHUNK_CLOUDS = 256


def build_index(
    model,
    source,
    output_dir: str | os.PathLike,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    resume: bool = True,
    progress: bool = True,
    accelerator=None,
    processor=None,
) -> PointCloudIndex:
    """
    Embed every cloud of `source` with [`embeddings_from_view_features`] and store the index in `output_dir`.

    Args:
        model ([`PointCLIPModel`]):
            The model (any projection, adapter or view weights); queries must use the same one.
        source (`str`, `os.PathLike`, `Iterable` of paths, or `datasets.Dataset`):
            A folder (searched recursively for supported files), a file, a list of files, or a dataset with a
            `points` column (a `label` `ClassLabel` column, when there is one, is kept with each item).
        output_dir (`str` or `os.PathLike`):
            The index folder; created when needed.
        batch_size (`int`, *optional*, defaults to 32):
            Clouds rendered and encoded at a time.
        num_workers (`int`, *optional*, defaults to 0):
            `DataLoader` processes that read and prepare clouds.
        resume (`bool`, *optional*, defaults to `True`):
            Continue from the chunks an interrupted build left (they must come from the same model, processor and
            data); `False` starts afresh.
        progress (`bool`, *optional*, defaults to `True`):
            Show a progress bar on the main process.
        accelerator (`accelerate.Accelerator`, *optional*):
            Shares the work across processes (found by itself under `accelerate launch` / `torchrun`).
        processor ([`PointCLIPProcessor`], *optional*):
            Defaults to `processor_for_model(model)`.

    Returns:
        [`PointCloudIndex`]: the finished index, on every process.
    """
    check_loop_arguments(batch_size, num_workers, None)
    folder = check_output_dir(output_dir)
    processor = processor_for_model(model, processor)
    check_processor(model, processor)
    items, make_source, data = _describe_source(source, processor.feature_extractor)
    header = _index_header(model, processor, data, len(items))
    accelerator = resolve_accelerator(accelerator)
    error = None
    try:
        if is_main(accelerator):
            _open_folder(folder, header, resume)
    except Exception as caught:  # noqa: BLE001 - re-raised on every process by agree
        error = caught
    agree(accelerator, error)
    if not (folder / "embeddings.safetensors").exists():
        _embed_missing(model, processor, folder, header, make_source, batch_size, num_workers, progress, accelerator)
        wait_for_everyone(accelerator)
        if is_main(accelerator):
            _merge(folder, header, items)
        wait_for_everyone(accelerator)
    return PointCloudIndex.load(folder)


def _describe_source(source, extractor):
    """`(items, make_source(indices), data fingerprint)` of a folder, file list or dataset."""
    from datasets import Dataset, Value

    if isinstance(source, Dataset):
        if "points" not in source.column_names:
            raise ValueError(f"The dataset has no 'points' column (columns: {source.column_names}).")
        label = source.features.get("label")
        names = getattr(label, "names", None)
        labels = source["label"] if names else [None] * len(source)
        paths = list(source["path"]) if source.features.get("path") == Value("string") else [None] * len(source)
        items = [
            {"row": i, **({"path": path} if path is not None else {}), **({"label": names[j]} if names else {})}
            for i, (j, path) in enumerate(zip(labels, paths))
        ]
        rows = source.with_format("numpy", columns=["points"])
        return items, lambda indices: RowSource(rows, indices, extractor), dataset_fingerprint(source, names)
    paths = list_point_cloud_files(source)
    items = [{"path": path} for path in paths]
    return items, lambda indices: FileSource(paths, indices, extractor), files_fingerprint(paths)


def _index_header(model, processor, data: dict, num_items: int) -> dict:
    fingerprint = {"model": str(model.name_or_path), **run_fingerprint(model, processor, [], 0, data)}
    fingerprint.pop("labels")
    fingerprint.pop("top_k")
    width = model.config.num_views * model.config.embed_dim
    return {"format": FORMAT, "num_items": num_items, "width": width, "num_views": model.config.num_views,
            "fingerprint": fingerprint}  # fmt: skip


def _open_folder(folder: Path, header: dict, resume: bool) -> None:
    """Start afresh, or check that what the folder holds was built from the same model, processor and data."""
    existing = read_header(folder) if resume else None
    if existing is None:
        remove_outputs(folder)
        write_header(folder, header)
    elif existing != header:
        changed = sorted(key for key in header["fingerprint"] if header["fingerprint"][key] != existing.get(
            "fingerprint", {}).get(key))  # fmt: skip
        raise IndexFileError(
            f"The index in {str(folder)!r} was built from another {', '.join(changed) or 'setup'}; use another "
            "--output folder, or --no-resume (resume=False in Python) to rebuild it."
        )


def _embed_missing(model, processor, folder, header, make_source, batch_size, num_workers, progress, accelerator):
    """Embed this process's share of the clouds that no chunk holds yet, a chunk file every `CHUNK_CLOUDS` clouds."""
    num_items = header["num_items"]
    done = set(read_chunks(folder, num_items, header["width"])["indices"].tolist())
    rank, world_size = rank_and_world_size(accelerator)
    missing = process_share([index for index in range(num_items) if index not in done], rank, world_size)
    if accelerator is not None:
        model.to(accelerator.device)
    batches = stream_batches(make_source(missing), processor.feature_extractor, model.device, batch_size, num_workers)
    bar = progress_bar(num_items, len(done), "Indexing", progress and is_main(accelerator))
    pending: list[tuple] = []
    was_training = model.training
    model.eval()
    with bar, torch.inference_mode():
        for batch in batches:
            embeddings = embeddings_from_view_features(model, model.get_view_features(batch.pixel_values))
            pending.append((torch.tensor(batch.indices), embeddings.embeds, embeddings.logit_scale))
            if sum(len(part[0]) for part in pending) >= CHUNK_CLOUDS:
                _flush(folder, pending)
            bar.update(len(batch.indices) * (world_size if is_main(accelerator) else 1))
        _flush(folder, pending)
    model.train(was_training)


def _flush(folder: Path, pending: list[tuple]) -> None:
    if pending:
        write_chunk(folder, *(torch.cat([part[i] for part in pending]) for i in range(3)))
        pending.clear()


def _merge(folder: Path, header: dict, items: list[dict]) -> None:
    """Write the finished index from the chunks, in cloud order; every cloud must be there exactly once."""
    chunks = read_chunks(folder, header["num_items"], header["width"])
    order = chunks["indices"].argsort()
    if not torch.equal(chunks["indices"][order], torch.arange(header["num_items"])):
        raise RuntimeError(
            f"The chunks in {str(folder)!r} hold {len(order)} embeddings for {header['num_items']} clouds (processes "
            "must share one file system)."
        )
    write_complete(folder, chunks["embeds"][order], chunks["logit_scale"][order], items)
