"""Whitespace- or comma-separated text clouds: `.xyz`, `.txt`, `.pts`, `.csv`; and the table parser of every text
format (PLY ascii, PCD ascii, OFF)."""

import io
import mmap
import re
from pathlib import Path

import numpy as np

from .errors import FormatError, check_file_size, check_rules

TEXT_EXTENSIONS = (".xyz", ".txt", ".pts", ".csv")
_BOM = b"\xef\xbb\xbf"
_HEAD_BYTES = 1 << 20


def load_text(path: Path, ext: str) -> np.ndarray:
    """The rows of a text cloud as a float64 array `[N, C]`.

    Blank lines and `#` comments are skipped. A `.csv` may start with a header row of column names (every field
    non-numeric, as many fields as the data rows); a first row mixing numbers and words is malformed, not a header. A
    `.pts` may start with a single-integer line giving the point count. Files over the `POINTCLIP_MAX_CLOUD_BYTES` cap
    are refused before they are read.
    """
    size = path.stat().st_size
    check_file_size(size, "text")
    head = _head(path, size)
    start, declared = _first_data_row(head, ext)
    table = _table(path, _first_line(head[start:]), None, True, head[:start].count(b"\n"))
    if table is None:  # malformed somewhere: the line-by-line parser names the row
        table = _parse_lines(_whole(path, head, size)[start:])
    if declared is not None and declared != len(table):
        raise FormatError(f"point count line says {declared} points but {len(table)} rows follow")
    return table


def _head(path: Path, size: int) -> bytes:
    """The file's first whole lines (its first MiB; more where those hold fewer than two data rows), BOM removed."""
    with open(path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if len(head) < size:
        head = head[: head.rfind(b"\n") + 1]
        if len(_data_lines(head)) < 2:
            head = path.read_bytes()
    return head.removeprefix(_BOM)


def _whole(path: Path, head: bytes, size: int) -> bytes:
    return path.read_bytes().removeprefix(_BOM) if len(head) < size else head


def _first_data_row(data: bytes, ext: str) -> tuple[int, int | None]:
    """`(byte offset of the first data row, the point count a .pts declares)`, after comments, blank lines, a `.csv`
    header row and a `.pts` count line."""
    lines = _data_lines(data)
    if not lines:  # comments and blank lines only: refused by the line parser
        return len(data), None
    offset, first = lines[0]
    if ext == ".csv" and _is_header_row(first, lines[1][1] if len(lines) > 1 else None):
        return lines[1][0] if len(lines) > 1 else len(data), None
    if ext == ".pts" and len(lines) > 1 and re.fullmatch(r"\s*\d+\s*", first):
        return lines[1][0], int(first)
    return offset, None


def _data_lines(data: bytes) -> list[tuple[int, str]]:
    """`(byte offset, text)` of the first two lines of `data` that are neither blank nor `#` comments."""
    lines = []
    for match in re.finditer(rb"[^\n]*(?:\n|$)", data):
        line = match.group()
        if line.strip() and not line.lstrip().startswith(b"#"):
            lines.append((match.start(), _decoded(line)))
            if len(lines) == 2:
                break
        if not match.group():
            break
    return lines


def _decoded(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FormatError(f"not a UTF-8/ASCII text file ({error.reason})") from None


def _is_header_row(first: str, second: str | None) -> bool:
    """Whether the first row of a `.csv` is a header row of column names: none of its fields a number, as many
    fields as the next row (a row mixing numbers and words is refused)."""
    numeric = [_is_number(field) for field in _fields(first)]
    header = not any(numeric)
    width = len(_fields(second)) if second is not None else len(numeric)
    check_rules([
        (header or all(numeric), f"row 1 mixes numbers and text: {first.strip()[:80]!r}"),
        (not header or width == len(numeric),
         f"header row has {len(numeric)} column names but the first data row has {width} values"),
    ])  # fmt: skip
    return header


def _fields(line: str) -> list[str]:
    return line.replace(",", " ").split()


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def read_table(data: bytes, rows: int | None = None, commas: bool = False) -> np.ndarray | None:
    """The numbers of `data` as a float64 table `[rows, columns]`, by pandas' C parser (`#` comments and blank lines
    skipped), or `None` where it cannot vouch for the result: a malformed, ragged or non-UTF-8 row, or a NaN (which
    may be a missing field). The caller then parses line by line and names the problem.

    Rows separated by single spaces (or commas) are parsed as such, twice as fast as any whitespace; other rows, or
    rows where that fails, as whitespace-separated.

    Args:
        data (`bytes`): the text.
        rows (`int`, *optional*): read only the first `rows` rows.
        commas (`bool`, *optional*, defaults to `False`): fields may be separated by commas (and spaces).
    """
    return _table(data, _first_line(data), rows, commas)


def _first_line(data: bytes) -> bytes:
    end = data.find(b"\n", 0, 1 << 16)
    return data[: end if end >= 0 else 1 << 16].rstrip(b"\r")


def _table(
    source: bytes | Path, first: bytes, rows: int | None, commas: bool, skip_lines: int = 0
) -> np.ndarray | None:
    """`read_table` of `source`, text or a file (read by pandas itself: twice as fast as from memory) whose first
    `skip_lines` lines are skipped, given its first data row `first`."""
    if commas and b"," in first:
        separators = [","]
    elif re.fullmatch(rb"\S+( \S+)*", first):
        separators = [" ", r"\s+"]
    else:
        separators = [r"\s+"]
    options = {"comment": "#"} if _has_comment(source) else {}
    if b", " in first:
        options["skipinitialspace"] = True
    if skip_lines:
        options["skiprows"] = skip_lines
    for separator in separators:
        table = _pandas_table(source, separator, rows, options)
        if table is not None:
            return table
    return None


def _has_comment(source: bytes | Path) -> bool:
    """Whether `source` holds a `#` (pandas' comment option slows it by a third, so it is set only then)."""
    if isinstance(source, bytes):
        return b"#" in source
    with open(source, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(b"#") >= 0


def _pandas_table(source: bytes | Path, separator: str, rows: int | None, options: dict) -> np.ndarray | None:
    import pandas

    try:
        frame = pandas.read_csv(io.BytesIO(source) if isinstance(source, bytes) else source, sep=separator,
                                header=None, dtype=np.float64, nrows=rows, engine="c", **options)  # fmt: skip
    except (ValueError, pandas.errors.ParserError, pandas.errors.EmptyDataError):  # UnicodeDecodeError included
        return None
    table = frame.to_numpy(dtype=np.float64)
    return None if np.isnan(table).any() else table


def _parse_lines(data: bytes) -> np.ndarray:
    text = _decoded(data)
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise FormatError("file contains zero points")
    return parse_rows([line.replace(",", " ") for line in lines], "point")


def parse_rows(rows: list[str], what: str) -> np.ndarray:
    """`rows` of numbers as a float64 array `[rows, columns]`; the error names the bad row and column."""
    try:
        return np.loadtxt(rows, dtype=np.float64, comments="#", ndmin=2)
    except ValueError as error:
        reason = str(error).split("; use `usecols`")[0]
        raise FormatError(f"malformed or truncated {what} data: {reason}") from None
