"""Whitespace- or comma-separated text clouds: `.xyz`, `.txt`, `.pts`, `.csv`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import FormatError

TEXT_EXTENSIONS = (".xyz", ".txt", ".pts", ".csv")


def load_text(path: Path, ext: str) -> np.ndarray:
    """The rows of a text cloud as a float64 array `[N, C]`.

    Blank lines and `#` comments are skipped. A `.csv` may start with a header row of column names (every field
    non-numeric, as many fields as the data rows); a first row mixing numbers and words is malformed, not a header. A
    `.pts` may start with a single-integer line giving the point count.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise FormatError(f"not a UTF-8/ASCII text file ({error.reason})") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if ext == ".csv" and lines and _is_header_row(lines):
        lines = lines[1:]
    elif ext == ".pts" and len(lines) > 1 and re.fullmatch(r"\s*\d+\s*", lines[0]):
        declared = int(lines[0])
        lines = lines[1:]
        if declared != len(lines):
            raise FormatError(f"point count line says {declared} points but {len(lines)} rows follow")
    if not lines:
        raise FormatError("file contains zero points")
    return parse_rows([line.replace(",", " ") for line in lines], "point")


def _is_header_row(lines: list[str]) -> bool:
    fields = _fields(lines[0])
    if not any(_is_number(field) for field in fields):
        if len(lines) > 1 and len(fields) != len(_fields(lines[1])):
            raise FormatError(
                f"header row has {len(fields)} column names but the first data row has {len(_fields(lines[1]))} values"
            )
        return True
    if not all(_is_number(field) for field in fields):
        raise FormatError(f"row 1 mixes numbers and text: {lines[0].strip()[:80]!r}")
    return False


def _fields(line: str) -> list[str]:
    return line.replace(",", " ").split()


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def parse_rows(rows: list[str], what: str) -> np.ndarray:
    """`rows` of numbers as a float64 array `[rows, columns]`; the error names the bad row and column."""
    try:
        return np.loadtxt(rows, dtype=np.float64, comments="#", ndmin=2)
    except ValueError as error:
        reason = str(error).split("; use `usecols`")[0]
        raise FormatError(f"malformed or truncated {what} data: {reason}") from None
