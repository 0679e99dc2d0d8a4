"""The one error type of the point-cloud readers, the size limits they check before allocating, and the check of a
table of rules (a header, a schema) that names every rule a file breaks in one error."""

import os
from collections.abc import Iterable

DEFAULT_MAX_CLOUD_BYTES = 1 << 30
"""Largest array a reader builds for one file, and largest text file it reads (1 GiB); override with
`POINTCLIP_MAX_CLOUD_BYTES`."""

DEFAULT_MAX_EXPANSION = 200
"""Largest ratio of decoded to stored bytes of a compressed file; override with `POINTCLIP_MAX_EXPANSION`."""


class PointCloudFileError(ValueError):
    """A point-cloud file that cannot be read: the message names the file and the problem in one line."""


class FormatError(ValueError):
    """A problem with a file's contents, raised inside a reader; `load_point_cloud` adds the file name."""


def max_cloud_bytes() -> int:
    """The size cap in bytes: `POINTCLIP_MAX_CLOUD_BYTES` when set, else `DEFAULT_MAX_CLOUD_BYTES`."""
    return _positive_int_from_env("POINTCLIP_MAX_CLOUD_BYTES", DEFAULT_MAX_CLOUD_BYTES)


def max_expansion() -> int:
    """The decompression-ratio cap: `POINTCLIP_MAX_EXPANSION` when set, else `DEFAULT_MAX_EXPANSION`."""
    return _positive_int_from_env("POINTCLIP_MAX_EXPANSION", DEFAULT_MAX_EXPANSION)


def check_rules(rules: Iterable[tuple[bool, str]], error: type[Exception] | None = None) -> None:
    """Refuse input that breaks any rule of a table (the fields of a header, the columns of a schema), naming every
    broken rule in one line.

    Args:
        rules (`Iterable[tuple[bool, str]]`): pairs of whether a rule holds and what is wrong when it does not.
        error (`type[Exception]`, *optional*, defaults to `FormatError`): the error type raised.

    Raises:
        FormatError (or `error`): some rule does not hold.
    """
    problems = [problem for holds, problem in rules if not holds]
    if problems:
        raise (error or FormatError)("; ".join(problems))


def check_declared_size(num_bytes: int, what: str, stored_bytes: int | None = None) -> None:
    """Refuse, before allocating, an array of `num_bytes` over the cap, or over `max_expansion()` times `stored_bytes`.

    Args:
        num_bytes (`int`): bytes the declared shape (or decompressed size) would take.
        what (`str`): what is declared, for the message (e.g. "the 'points' member").
        stored_bytes (`int`, *optional*): bytes it is stored in, for compressed data.

    Raises:
        FormatError: the declared size is over a cap.
    """
    cap, ratio = max_cloud_bytes(), max_expansion()
    check_rules([
        (num_bytes <= cap, f"{what} declares {num_bytes:,} bytes, over the {cap:,}-byte cap "
                           "(raise POINTCLIP_MAX_CLOUD_BYTES to allow)"),
        (stored_bytes is None or num_bytes <= ratio * max(stored_bytes, 1),
         f"{what} expands {stored_bytes or 0:,} stored bytes to {num_bytes:,}, over {ratio}x "
         "(raise POINTCLIP_MAX_EXPANSION to allow)"),
    ])  # fmt: skip


def check_file_size(num_bytes: int, kind: str) -> None:
    """Refuse, before reading it, a file of `num_bytes` over `max_cloud_bytes()`: the cap of formats whose size
    nothing in the file declares (text clouds; a file as uploaded to the demo).

    Args:
        num_bytes (`int`): the file's size.
        kind (`str`): what the file is, for the message (e.g. "text").

    Raises:
        FormatError: the file is over the cap.
    """
    cap = max_cloud_bytes()
    if num_bytes > cap:
        raise FormatError(
            f"{kind} file of {num_bytes:,} bytes is over the {cap:,}-byte cap "
            "(raise POINTCLIP_MAX_CLOUD_BYTES to allow)"
        )


def _positive_int_from_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise ValueError(f"environment variable {name}={value!r} must be a positive integer")
    return number
