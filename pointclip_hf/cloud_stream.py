"""
The one loop that streams point clouds (files, dataset rows or in-memory arrays) into rendered views, a batch at a
time: [`evaluate`], [`classify_files`], [`build_index`] and [`embed_point_clouds`] all read their clouds here.

A source is a `torch.utils.data.Dataset` over some indices of the run (this process's share, without what an earlier
run already did). A `DataLoader` with `num_workers` worker processes reads and prepares each file or row on the CPU
with the processor's `prepare_points`, one cloud at a time, so clouds of different sizes are fine and a cloud's result
never depends on its batch, worker or process; in-memory clouds are prepared a batch at a time, each cloud still on
its own, on the CPU threads. [`stream_batches`] stacks the prepared clouds, renders their views on the model's device
and yields one [`CloudBatch`] at a time, so only one batch of pixels exists at once. What a caller does with the views
(logits, embeddings), its output file and how it resumes stay with the caller.
"""

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .io import SUPPORTED_EXTENSIONS, PointCloudFileError
from .io.reader import check_point_cloud_path


@dataclass
class CloudBatch:
    """
    One batch of a stream.

    Args:
        indices (`list[int]`):
            The run's index of each cloud.
        names (`list[str]`):
            How messages name each cloud.
        pixel_values (`torch.Tensor` of shape `(batch, views, 3, size, size)`):
            The rendered views, on the stream's device.
        labels (`list[int]`, *optional*):
            The class id of each cloud, for a source with labels.
    """

    indices: list[int]
    names: list[str]
    pixel_values: torch.Tensor
    labels: list[int] | None = None


def stream_batches(source, extractor, device: torch.device, batch_size: int, num_workers: int) -> Iterator[CloudBatch]:
    """
    Read, prepare and render the clouds of `source` in order, `batch_size` at a time.

    Args:
        source ([`FileSource`], [`RowSource`] or [`ArraySource`]):
            The clouds; its items are `(index, points)` or `(index, points, label)`.
        extractor ([`PointCLIPFeatureExtractor`]):
            Renders the views (and, through the source, prepared the points).
        device (`torch.device`):
            Where the views are rendered (the model's device).
        batch_size (`int`), num_workers (`int`):
            The loader's settings.

    Yields:
        [`CloudBatch`]: the next batch. An error of a worker process is raised as the worker raised it.
    """
    pin_memory = device.type == "cuda" and not isinstance(source, ArraySource)
    loader = torch.utils.data.DataLoader(
        source, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin_memory
    )
    for batch in _worker_errors_as_raised(loader):
        indices = batch[0].tolist()
        names = [source.describe(index) for index in indices]
        pixel_values = extractor.render(batch[1].to(device, non_blocking=True), names)
        yield CloudBatch(indices, names, pixel_values, batch[2].tolist() if len(batch) > 2 else None)


def process_share(indices: Sequence[int], rank: int, world_size: int) -> Sequence[int]:
    """The indices process `rank` of `world_size` streams: every `world_size`-th, from its rank on, so that the
    processes' shares are disjoint and cover `indices` once, with no padding."""
    return indices[rank::world_size]


def progress_bar(total: int, done: int, desc: str, show: bool):
    """A tqdm bar over `total` clouds, `done` of them already there; `show=False` hides it (off the main process)."""
    from huggingface_hub.utils import tqdm

    return tqdm(total=total, initial=done, desc=desc, unit="cloud", disable=not show)


def _worker_errors_as_raised(loader):
    """Iterate `loader`, raising an error of a worker process as the worker raised it: torch raises it again with the
    worker's whole traceback in its message, which would turn one bad file into many lines."""
    try:
        yield from loader
    except (ValueError, TypeError, OSError) as error:
        message = str(error)
        if "Original Traceback" not in message:
            raise
        raise _with_message(error, message.strip().splitlines()[-1].partition(": ")[2]) from None


def prepare_one(extractor, cloud, what: str) -> torch.Tensor:
    """Prepare one cloud (or read and prepare one file); a `ValueError` or `TypeError` is raised again with `what` in
    front of its message, unless it names the cloud already."""
    try:
        return extractor.prepare_points(cloud, names=[what])[0]
    except (ValueError, TypeError) as error:
        if str(error).startswith(what) or isinstance(error, PointCloudFileError):
            raise
        wrapped = _with_message(error, f"{what}: {error}")
        raise wrapped from (None if wrapped is error else error)


def _with_message(error: Exception, message: str) -> Exception:
    """`error`'s type with `message`, or `error` itself when that type takes other arguments."""
    try:
        return type(error)(message)
    except Exception:  # noqa: BLE001 - an exception type with another signature: keep it as it is
        return error


class RowSource(torch.utils.data.Dataset):
    """
    Rows of a dataset, prepared for the model.

    Args:
        dataset (`datasets.Dataset`):
            Formatted as numpy, with a `points` column (and a `label` column when `num_labels` is given).
        indices (`Sequence[int]`):
            The rows to read.
        extractor ([`PointCLIPFeatureExtractor`]):
            Prepares the points.
        num_labels (`int`, *optional*):
            The number of classes: items then carry the row's label, and a label outside `[0, num_labels)` raises.

    Items are `(index, points)`, or `(index, points, label)` with `num_labels`; points a `torch.Tensor` of shape
    `(points, 3)`.
    """

    def __init__(self, dataset, indices: Sequence[int], extractor, num_labels: int | None = None):
        self.dataset, self.indices, self.extractor, self.num_labels = dataset, indices, extractor, num_labels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = self.indices[position]
        row = self.dataset[index]
        if self.num_labels is None:
            return index, prepare_one(self.extractor, row["points"], self.describe(index))
        label = int(row["label"])
        if not 0 <= label < self.num_labels:
            raise ValueError(f"Dataset row {index} has label {label}, outside the {self.num_labels} classes.")
        return index, prepare_one(self.extractor, row["points"], self.describe(index)), label

    def describe(self, index: int) -> str:
        """How messages name row `index`."""
        return f"Dataset row {index}"


class FileSource(torch.utils.data.Dataset):
    """
    Point-cloud files, read and prepared for the model.

    Args:
        paths (`list[str]`):
            All files of the run.
        indices (`Sequence[int]`):
            The positions in `paths` to read.
        extractor ([`PointCLIPFeatureExtractor`]):
            Prepares the points.

    Items are `(index, points)` with points a `torch.Tensor` of shape `(points, 3)`.
    """

    def __init__(self, paths: list[str], indices: Sequence[int], extractor):
        self.paths, self.indices, self.extractor = paths, indices, extractor

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = self.indices[position]
        return index, prepare_one(self.extractor, self.paths[index], self.describe(index))  # read by its format

    def describe(self, index: int) -> str:
        """How messages name the file at position `index`."""
        return f"Point cloud file {self.paths[index]!r}"


class ArraySource(torch.utils.data.Dataset):
    """
    In-memory clouds (or file paths), prepared a loader batch at a time on `device`: one `prepare_points` call per
    batch, each cloud on its own CPU thread.

    Args:
        clouds (`list`):
            The clouds: `(N, 3+)` arrays, tensors, nested lists or file paths.
        extractor ([`PointCLIPFeatureExtractor`]):
            Prepares the points.
        device (`torch.device`):
            Where the clouds are prepared (the model's device).

    Items are `(index, points)` with points a `torch.Tensor` of shape `(points, 3)` on `device`.
    """

    def __init__(self, clouds: list, extractor, device: torch.device):
        self.clouds, self.extractor, self.device = clouds, extractor, device

    def __len__(self) -> int:
        return len(self.clouds)

    def __getitem__(self, index: int):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple]:
        names = [self.describe(index) for index in indices]
        points = self.extractor.prepare_points([self.clouds[i] for i in indices], device=self.device, names=names)
        return list(zip(indices, points))

    def describe(self, index: int) -> str:
        """How messages name cloud `index`."""
        return f"Point cloud {index}"


def list_point_cloud_files(paths_or_folder) -> list[str]:
    """
    The files of a run: a folder's supported files (recursively, sorted, hidden ones skipped), or those given.

    Args:
        paths_or_folder (`str`, `os.PathLike` or `Iterable` of them):
            A folder, one file, or a list of files.

    Returns:
        `list[str]`: the files, each checked to exist and to have a supported extension.
    """
    single = isinstance(paths_or_folder, (str, os.PathLike))
    if single and Path(paths_or_folder).is_dir():
        paths = _files_in_folder(Path(paths_or_folder))
    elif single or isinstance(paths_or_folder, Iterable):
        paths = [Path(item) for item in ([paths_or_folder] if single else paths_or_folder)]
    else:
        raise TypeError(f"Expected a folder, a file or a list of files, got {type(paths_or_folder).__name__}.")
    if not paths:
        where = f"found in {str(paths_or_folder)!r} (looked for {', '.join(SUPPORTED_EXTENSIONS)})"
        raise ValueError(f"No point-cloud files {where if single else 'given (empty list)'}.")
    for path in paths:
        check_point_cloud_path(path)
    return [str(path) for path in paths]


def _files_in_folder(folder: Path) -> list[Path]:
    return sorted(
        child
        for child in folder.rglob("*")
        if child.suffix.lower() in SUPPORTED_EXTENSIONS
        and child.is_file()
        and not any(part.startswith(".") for part in child.relative_to(folder).parts)
    )
