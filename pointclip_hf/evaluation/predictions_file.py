"""
The resumable predictions file (JSON lines): its header, the check and scan of an existing file, the writer, and the
per-process shard files `predictions.rank{r}.jsonl` with their merge into one file.

The first line is `{"header": {"format", "task", "fingerprint"}}` (a shard's header also names `shard: {rank,
world_size}`); then one record per cloud, in index order. A file belongs to a run when its header equals the run's.
"""

import heapq
import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..atomic_files import naming_the_file, write_file_atomically

FORMAT = "pointclip-predictions/1"
PREDICTIONS_FILE = "predictions.jsonl"
# How a refusal to resume says how to start afresh, whichever surface the user called.
START_AFRESH = "pass resume=False (--no-resume on the command line)"

Consume = Callable[[dict], None]


def make_header(task: str, fingerprint: dict) -> dict:
    """The header of a single-process predictions file of `task` (`"evaluate"` or `"classify_files"`)."""
    return {"format": FORMAT, "task": task, "fingerprint": fingerprint}


def shard_header(header: dict, rank: int, world_size: int) -> dict:
    """The header of process `rank`'s shard file; a single process's file keeps `header` as it is."""
    return header if world_size == 1 else {**header, "shard": {"rank": rank, "world_size": world_size}}


def _encode_line(value: dict) -> bytes:
    return json.dumps(value).encode("utf-8") + b"\n"


def shard_path(path: Path, rank: int) -> Path:
    """`predictions.jsonl` -> `predictions.rank{rank}.jsonl`, beside it."""
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def shard_files(path: Path) -> dict[int, Path]:
    """The shard files of `path` that exist, by rank."""
    found = {}
    prefix, suffix = f"{path.stem}.rank", path.suffix
    for candidate in path.parent.glob(f"{path.stem}.rank*{suffix}"):
        middle = candidate.name[len(prefix) : len(candidate.name) - len(suffix)]
        if middle.isdigit():
            found[int(middle)] = candidate
    return found


def _read_header(path: Path) -> dict | None:
    """
    Read the header of a predictions file.

    Returns:
        `dict` or `None`: the header; `None` when the file is empty or its header line was cut short.

    Raises:
        ValueError: the file is not a PointCLIP predictions file.
    """
    with open(path, "rb") as handle:
        first = handle.readline()
    if not first.endswith(b"\n") and (not first.strip() or first.startswith(b'{"header"')):
        return None
    header = (_parse_object(first) or {}).get("header")
    if not isinstance(header, dict) or not str(header.get("format", "")).startswith("pointclip-predictions/"):
        raise ValueError(
            f"{str(path)!r} is not a PointCLIP predictions file (its first line is not our header); it was not "
            f"modified. Choose another output location, or {START_AFRESH} to overwrite it."
        )
    return header


def _shard_world_size(path: Path) -> int | None:
    """The number of processes named in a shard file's header (`None` for a file without one)."""
    shard = (_read_header(path) or {}).get("shard")
    return shard.get("world_size") if isinstance(shard, dict) else None


def scan_predictions(path: Path, header: dict, expected: Sequence[int], consume: Consume | None) -> tuple[int, int]:
    """
    Check an existing predictions file against the run's `header` and read its records, which must be the first
    indices of `expected`. A last line without its newline (the run died while writing it) is not counted.

    Args:
        path (`Path`):
            The file; it is only read.
        header (`dict`):
            The header the file must have.
        expected (`Sequence[int]`):
            The indices of the clouds the file covers, in order.
        consume (`Callable[[dict], None]`, *optional*):
            Called with each record read.

    Returns:
        `tuple[int, int]`: the number of bytes to keep, and the number of records read.

    Raises:
        ValueError: the file belongs to another run or is damaged (it is left untouched).
    """
    found = _read_header(path)
    if found is None:
        return 0, 0
    if found != header:
        raise ValueError(
            f"{str(path)!r} holds predictions of a different run, so it cannot be resumed: "
            + "; ".join(_differences(found, header))
            + f". The file was not modified; {START_AFRESH} to overwrite it, or choose another output location."
        )
    return _read_records(path, expected, set(header["fingerprint"]["labels"]), consume)


def _read_records(path: Path, expected: Sequence[int], labels: set[str], consume: Consume | None) -> tuple[int, int]:
    keep, count = 0, 0
    with open(path, "rb") as handle:
        keep = len(handle.readline())
        for number, line in enumerate(handle, start=2):
            if not line.endswith(b"\n"):
                break
            record = _parse_object(line)
            problem = _record_problem(record, labels)
            if problem is None and (count >= len(expected) or record["index"] != expected[count]):
                wanted = f"cloud {expected[count]}" if count < len(expected) else "no further record"
                problem = f"a record of cloud {record['index']} where {wanted} was expected"
            if problem is not None:
                raise ValueError(
                    f"{str(path)!r} is damaged at line {number}: {problem}; it was not modified (delete it, or "
                    f"{START_AFRESH} to overwrite it)."
                )
            if consume is not None:
                consume(record)
            count += 1
            keep += len(line)
    return keep, count


def _parse_object(line: bytes) -> dict | None:
    """The JSON object on `line`, or `None` for anything else."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _record_problem(record: dict | None, labels: set[str]) -> str | None:
    """What makes a line unusable as a prediction record of a run with `labels` (`None`: nothing): it must have an
    integer `index`, name only known labels, and hold finite scores in `[0, 1]`."""
    if record is None or not _is_index(record.get("index")):
        return "not a prediction record"
    top_k = record.get("top_k")
    if not isinstance(top_k, list) or not all(isinstance(entry, dict) for entry in top_k):
        return "not a prediction record (no top_k list)"
    names = [record.get("prediction"), *(entry.get("label") for entry in top_k)]
    names += [record["label"]] if "label" in record else []
    unknown = [name for name in names if not isinstance(name, str) or name not in labels]
    if unknown:
        return f"a record of cloud {record['index']} names the label {_short(unknown[0])}, not one of this run's"
    scores = [record.get("score"), *(entry.get("score") for entry in top_k)]
    if not all(_is_probability(score) for score in scores):
        return f"a record of cloud {record['index']} holds a score that is not a number in [0, 1] (NaN?)"
    return None


def _is_index(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_probability(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def _short(value, limit: int = 160) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _differences(found: dict, expected: dict, prefix: str = "") -> list[str]:
    """`key: old in the file, new now` for every (nested) entry in which two headers differ."""
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


def open_for_resume(
    path: Path, header: dict, shard: range, num_items: int, rank: int, world_size: int, consume: Consume
) -> tuple[Path, int, int] | None:
    """
    Find what an earlier run of this process left, passing its records to `consume`.

    Args:
        path (`Path`):
            The run's predictions file; with several processes, each appends to its own shard file beside it.
        header (`dict`):
            The run's single-process header.
        shard (`range`):
            The indices of the clouds this process predicts.
        num_items (`int`):
            The number of clouds of the whole run.
        rank (`int`), world_size (`int`):
            This process and the number of processes.
        consume (`Callable[[dict], None]`):
            Called with each record of this process's shard that is already done.

    Returns:
        `tuple[Path, int, int]` or `None`: the file to append to, the number of its bytes to keep and the number of
        records done; `None` when the finished `path` already holds every cloud.
    """
    found = shard_files(path)
    if world_size > 1 and path.exists():
        _reuse_finished_file(path, header, num_items, rank, world_size, consume)
        return None
    resumable = {world_size, None} if world_size > 1 else set()  # a shard without a header holds no record yet
    other_sizes = {_shard_world_size(other) for other in found.values()} - resumable
    if other_sizes:
        raise ValueError(
            f"Found shard files {sorted(str(other) for other in found.values())} of an interrupted run of "
            f"{' or '.join(sorted(map(str, other_sizes)))} processes, but this run has {world_size}; resume it with "
            f"that many processes, or {START_AFRESH}."
        )
    if world_size == 1:
        return _resume_single_process(path, header, shard, consume)
    mine = shard_path(path, rank)
    if mine.exists():
        keep, done = scan_predictions(mine, shard_header(header, rank, world_size), shard, consume)
        return mine, keep, done
    return mine, 0, 0


def _resume_single_process(path: Path, header: dict, shard: range, consume: Consume) -> tuple[Path, int, int]:
    if path.exists():
        keep, done = scan_predictions(path, header, shard, consume)
        return path, keep, done
    return path, 0, 0


def _reuse_finished_file(path: Path, header: dict, num_items: int, rank: int, world_size: int, consume: Consume):
    """Pass this process's records of a finished single-file run to `consume`; an unfinished one is an error."""

    def mine(record):
        if record["index"] % world_size == rank:
            consume(record)

    _, done = scan_predictions(path, header, range(num_items), mine)
    if done != num_items:
        raise ValueError(
            f"{str(path)!r} holds an unfinished run of a single process ({done} of {num_items} clouds); resume it with "
            f"one process, or {START_AFRESH}."
        )


class PredictionsWriter:
    """
    Appends records to a predictions file, flushing after each batch.

    Args:
        path (`Path`):
            The file.
        header (`dict`):
            Written as the first line when the file is started afresh.
        keep (`int`):
            Bytes of an existing file to keep (as from [`scan_predictions`]); `0` starts the file afresh.
    """

    def __init__(self, path: Path, header: dict, keep: int):
        self.path = path
        with naming_the_file(path):
            if keep == 0:
                self.handle = open(path, "wb")
                self.handle.write(_encode_line({"header": header}))
                self.handle.flush()
            else:
                self.handle = open(path, "r+b")
                self.handle.truncate(keep)
                self.handle.seek(keep)

    def write(self, records: list[dict]) -> None:
        with naming_the_file(self.path):
            self.handle.write(b"".join(_encode_line(record) for record in records))
            self.handle.flush()

    def close(self) -> None:
        with naming_the_file(self.path):
            self.handle.close()


def merge_shards(final: Path, shards: list[Path], header: dict, num_items: int) -> None:
    """
    Merge the shard files (each sorted by index) into `final` by index, streaming, then delete them. `final` is
    written atomically and only when the merged indices are exactly `0 .. num_items - 1`.

    Args:
        final (`Path`):
            The single predictions file.
        shards (`list[Path]`):
            The shard files, one per process.
        header (`dict`):
            The header of `final` (the single-process one).
        num_items (`int`):
            The number of clouds of the run.
    """
    write_file_atomically(final, _merged_lines(shards, header, num_items))
    for path in shards:
        path.unlink()


def _merged_lines(shards: list[Path], header: dict, num_items: int) -> Iterator[bytes]:
    yield _encode_line({"header": header})
    expected = 0
    for index, line in heapq.merge(*(_shard_records(path) for path in shards), key=lambda item: item[0]):
        if index != expected:
            break
        yield line
        expected += 1
    else:
        if expected == num_items:
            return
    raise RuntimeError(
        f"Merging the shard files: their records are not clouds 0 .. {num_items - 1} once each (in order up to cloud "
        f"{expected})."
    )


def _shard_records(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as handle:
        handle.readline()
        for line in handle:
            yield json.loads(line)["index"], line
