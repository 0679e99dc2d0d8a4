"""A run's test-time cache beside its predictions file, so that an interrupted run resumes with the cache it had.

After every batch, once its records are written, the cache is saved to `<predictions stem>.test_time_cache.safetensors`
(atomically) with the run's header, the number of records it has seen and the size of the predictions file at that
moment. Before resuming, the predictions file is cut back to that size (records written after the last save, by a run
that died before saving, are predicted again with the restored cache), and the file must then hold exactly the records
the state has seen. With several processes each one adapts on its own shard (the indices `r, r + W, ...`) with its own
cache and state file beside its shard file; the caches are not merged, the predictions are (by index), and each
process's final state stays beside the merged file.
"""

import json
from pathlib import Path

import torch

from ..model.inter_view_adapter import fused_features
from ..test_time_cache import TestTimeCache, TestTimeCacheConfig, as_test_time_cache_config
from .predictions_file import PredictionsWriter, _encode_line, shard_header, shard_path

STATE_SUFFIX = ".test_time_cache.safetensors"


def new_test_time_cache_run(test_time_cache, num_labels: int, fingerprint: dict) -> "TestTimeCacheRun | None":
    r"""
    The test-time cache of a run, from the `test_time_cache` argument of [`evaluate`] or [`classify_files`]. Its
    settings join the run's fingerprint: a predictions file written with other settings (or none) is never resumed.

    Args:
        test_time_cache (`bool`, `dict` or [`TestTimeCacheConfig`]):
            `False` (off), `True` (the default settings), or the settings.
        num_labels (`int`):
            The number of candidate labels.
        fingerprint (`dict`):
            The run's fingerprint, completed in place.

    Returns:
        [`TestTimeCacheRun`], or `None` when off.
    """
    config = as_test_time_cache_config(test_time_cache)
    if config is None:
        return None
    fingerprint["test_time_cache"] = config.to_dict()
    return TestTimeCacheRun(num_labels, config)


def state_path(predictions: Path) -> Path:
    """`predictions.jsonl` -> `predictions.test_time_cache.safetensors`, beside it."""
    return predictions.with_name(predictions.stem + STATE_SUFFIX)


class TestTimeCacheRun:
    r"""
    The test-time cache of one process of a predict run, restored from and saved beside its predictions file.

    Args:
        num_labels (`int`):
            The number of candidate labels.
        config ([`TestTimeCacheConfig`]):
            The cache settings.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, num_labels: int, config: TestTimeCacheConfig):
        self.cache = TestTimeCache(num_labels, config)
        self.target, self.header, self.done, self.finished = None, None, 0, False

    def prepare(self, path: Path | None, header: dict, resume: bool, rank: int, world_size: int) -> None:
        r"""
        Before the predictions file is read: restore this process's saved cache and cut its file back to the records
        the cache has seen (`resume=True`), or delete the saved cache (`resume=False`).

        Args:
            path (`Path`, *optional*):
                The run's predictions file (`None`: nothing is saved).
            header (`dict`):
                The run's single-process header.
            resume (`bool`):
                Whether the run resumes.
            rank (`int`), world_size (`int`):
                This process and the number of processes.
        """
        if path is None:
            return
        self.target = path if world_size == 1 else shard_path(path, rank)
        self.header = shard_header(header, rank, world_size)
        state = state_path(self.target)
        if resume and world_size > 1 and path.exists():
            self.finished = True  # a finished file is read back, nothing is predicted
            return
        if not resume or not self.target.exists():
            state.unlink(missing_ok=True)
            return
        with open(self.target, "rb") as handle:
            first_line = handle.readline()
        if first_line != _encode_line({"header": self.header}):
            return  # another run's file (or a cut header): the predictions file check reports it, untouched
        keep = len(first_line)
        if state.exists():
            keep = self._restore(state)
        if self.target.stat().st_size > keep:
            with open(self.target, "r+b") as handle:
                handle.truncate(keep)

    def _restore(self, state: Path) -> int:
        """Load the saved cache; return the size of the predictions file it belongs to."""
        cache, metadata = TestTimeCache.load(state)
        if metadata.get("header") != json.dumps(self.header, sort_keys=True):
            raise ValueError(
                f"{str(state)!r} is the test-time cache of a different run; delete it or pass resume=False."
            )
        self.cache, self.done = cache, int(metadata["records"])
        return int(metadata["file_bytes"])

    def check_resumed(self, done: int) -> None:
        """Raise unless the predictions file holds exactly the records the restored cache has seen."""
        if self.target is not None and not self.finished and done != self.done:
            raise ValueError(
                f"{str(self.target)!r} holds {done} predictions but its test-time cache "
                f"{str(state_path(self.target))!r} has seen {self.done} clouds: they do not belong together. Pass "
                "resume=False to start over."
            )

    def adapt(self, output, logits: torch.Tensor) -> torch.Tensor:
        """The adapted logits of a batch (in its order), from the model's output and its (ordered) logits."""
        return self.cache.adapt(fused_features(output.point_cloud_embeds), logits)

    def save(self, num_records: int, writer: PredictionsWriter | None) -> None:
        """After a batch's records are written: save the cache with the file size it belongs to."""
        self.done += num_records
        if writer is None or self.target is None:
            return
        metadata = {
            "header": json.dumps(self.header, sort_keys=True),
            "records": str(self.done),
            "file_bytes": str(writer.handle.tell()),
        }
        self.cache.save(state_path(self.target), metadata)
