"""`.pcd` files (PCL): `DATA ascii`, `binary` and `binary_compressed` (LZF, needs the `pcd` extra)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured

from .arrays import float_dtype_for
from .errors import FormatError, check_declared_size
from .text import parse_rows, read_table

_TYPES = {("F", 4): "f4", ("F", 8): "f8",
          ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
          ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}  # fmt: skip


@dataclass
class PCDHeader:
    """What a PCD header declares: the fields (name, numpy type code, count), the point count and the DATA mode."""

    fields: list[tuple[str, str, int]]
    points: int
    mode: str

    def record_dtype(self) -> np.dtype:
        return np.dtype([(f"f{i}", "<" + code, (count,)) for i, (_, code, count) in enumerate(self.fields)])


def load_pcd(data: bytes) -> np.ndarray:
    """The points of a PCD file as float64 `[N, C]`: `x, y, z`, then the other fields in order (padding `_` dropped,
    `COUNT > 1` fields as several columns, a packed `rgb`/`rgba` unpacked to `r, g, b[, a]` in `0..255`)."""
    header, body = _parse_header(data)
    if header.mode == "ascii":
        values = _ascii_values(header, bytes(body))
        return values[:, _column_order(header)] if _plain(header) else _assemble(header, _ascii_columns(header, values))
    if header.mode == "binary":
        records = _binary_records(header, body)
        if _plain(header) and len({code for _, code, _ in header.fields}) == 1:  # one table, copied aligned
            table = records.view("<" + header.fields[0][1]).reshape(header.points, len(header.fields))
            order = _column_order(header)
            return table.copy() if order == list(range(len(header.fields))) else np.take(table, order, axis=1)
        if _plain(header):
            order = [f"f{i}" for i in _column_order(header)]
            dtype = float_dtype_for(records.dtype[name] for name in order)
            return np.array(structured_to_unstructured(records[order], dtype=dtype))  # writable, not the bytes
        return _assemble(header, _record_columns(header, records))
    if header.mode == "binary_compressed":
        fields = _compressed_fields(header, body)
        if _plain(header):  # one pass over the decompressed fields
            order = _column_order(header)
            out = np.empty((header.points, len(order)), dtype=float_dtype_for(fields[i].dtype for i in order))
            for column, index in enumerate(order):
                out[:, column] = fields[index][:, 0]
            return out
        names = [name for name, _, _ in header.fields]
        return _assemble(header, {name: field for name, field in zip(names, fields) if name != "_"})
    raise FormatError(f"unsupported PCD DATA type {header.mode!r}")


def _plain(header: PCDHeader) -> bool:
    """Whether every field is one value and none is a packed colour: the columns are the fields, reordered."""
    return all(count == 1 and name not in ("rgb", "rgba") for name, _, count in header.fields)


def _column_order(header: PCDHeader) -> list[int]:
    """Indices of the fields as output columns: x, y, z, then the others in order, padding `_` dropped."""
    names = [name for name, _, _ in header.fields]
    rest = [i for i, name in enumerate(names) if name not in ("x", "y", "z", "_")]
    return [names.index("x"), names.index("y"), names.index("z")] + rest


def _parse_header(data: bytes) -> tuple[PCDHeader, memoryview]:
    match = re.search(rb"^DATA([ \t][^\n]*)?(\r?\n|$)", data, re.MULTILINE)
    if match is None:
        raise FormatError("PCD header is not terminated (no 'DATA' line)")
    try:
        text = data[: match.end()].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("PCD header contains non-ASCII bytes") from None
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, *values = line.split()
            entries[key.upper()] = values
    header = PCDHeader(_fields(entries), _point_count(entries), (entries.get("DATA") or [""])[0].lower())
    return header, memoryview(data)[match.end() :]  # binary bodies are read in place


def _fields(entries: dict[str, list[str]]) -> list[tuple[str, str, int]]:
    for key in ("FIELDS", "SIZE", "TYPE"):
        if key not in entries:
            raise FormatError(f"PCD header lacks the {key} line")
    names = entries["FIELDS"]
    counts = entries.get("COUNT", ["1"] * len(names))
    if not (len(names) == len(entries["SIZE"]) == len(entries["TYPE"]) == len(counts)):
        raise FormatError("PCD header FIELDS/SIZE/TYPE/COUNT lines have different lengths")
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise FormatError(f"PCD file lacks fields {missing} (has {names})")
    named = [name for name in names if name != "_"]
    if len(set(named)) != len(named):
        raise FormatError(f"PCD header has duplicate fields {names}")
    fields = []
    for name, size, kind, count in zip(names, entries["SIZE"], entries["TYPE"], counts):
        code = _TYPES.get((kind.upper(), int(size) if size.isdigit() else -1))
        if code is None:
            raise FormatError(f"PCD field {name!r} has unsupported TYPE {kind} SIZE {size}")
        if not count.isdigit() or int(count) < 1:
            raise FormatError(f"PCD field {name!r} has COUNT {count}, expected a positive integer")
        fields.append((name, code, int(count)))
    return fields


def _point_count(entries: dict[str, list[str]]) -> int:
    values = {}
    for key in ("WIDTH", "HEIGHT", "POINTS"):
        if key in entries:
            if len(entries[key]) != 1 or not re.fullmatch(r"\d+", entries[key][0]):
                raise FormatError(f"PCD header {key} {' '.join(entries[key])!r} is not a non-negative integer")
            values[key] = int(entries[key][0])
    width, height, points = values.get("WIDTH"), values.get("HEIGHT", 1), values.get("POINTS")
    if points is None:
        if width is None:
            raise FormatError("PCD header lacks both POINTS and WIDTH")
        points = width * height
    elif width is not None and width * height != points:
        raise FormatError(f"PCD header POINTS {points} does not match WIDTH*HEIGHT {width}*{height}")
    if points == 0:
        raise FormatError("file contains zero points")
    return points


def _ascii_values(header: PCDHeader, body: bytes) -> np.ndarray:
    """The ascii rows as one float64 table, checked against the header's point count and field widths."""
    width = sum(count for *_, count in header.fields)
    values = read_table(body)
    if values is None or values.shape != (header.points, width):  # NaN points, or malformed: parsed line by line
        values = _ascii_rows(header, body)
    if values.shape[1] != width:
        raise FormatError(f"PCD data rows have {values.shape[1]} values, header declares {width}")
    return values


def _ascii_columns(header: PCDHeader, values: np.ndarray) -> dict[str, np.ndarray]:
    columns, start = {}, 0
    for name, code, count in header.fields:
        block = values[:, start : start + count]
        start += count
        if name in ("rgb", "rgba") and count == 1:
            with np.errstate(invalid="ignore"):  # a NaN colour becomes some bit pattern, as PCL writes it
                block = block.astype(code)
        columns[name] = block
    return columns


def _ascii_rows(header: PCDHeader, body: bytes) -> np.ndarray:
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("PCD ascii body contains non-ASCII bytes") from None
    rows = [line for line in text.splitlines() if line.strip()]
    if len(rows) != header.points:
        raise FormatError(f"PCD header says POINTS {header.points} but {len(rows)} data rows follow")
    return parse_rows(rows, "PCD")


def _binary_records(header: PCDHeader, body: memoryview) -> np.ndarray:
    dtype = header.record_dtype()
    needed = header.points * dtype.itemsize
    if len(body) < needed:
        raise FormatError(
            f"PCD file is truncated: header declares {header.points} points ({needed} bytes) "
            f"but only {len(body)} bytes of data follow the header"
        )
    return np.frombuffer(body, dtype=dtype, count=header.points)


def _compressed_fields(header: PCDHeader, body: memoryview) -> list[np.ndarray]:
    """Decompress LZF field-major data, after checking its declared sizes: one `[points, count]` array per field."""
    if len(body) < 8:
        raise FormatError("PCD binary_compressed data lacks its size words")
    stored, expanded = struct.unpack("<II", body[:8])
    dtype = header.record_dtype()
    if expanded != header.points * dtype.itemsize:
        raise FormatError(
            f"PCD binary_compressed data expands to {expanded} bytes; {header.points} points need "
            f"{header.points * dtype.itemsize}"
        )
    if stored > len(body) - 8:
        raise FormatError(f"PCD file is truncated: {stored} compressed bytes declared, {len(body) - 8} follow")
    check_declared_size(expanded, "the PCD binary_compressed data", stored)
    raw = _lzf().decompress(bytes(body[8 : 8 + stored]), expanded) if expanded else b""
    if raw is None or len(raw) != expanded:
        raise FormatError("PCD binary_compressed data is corrupt (LZF decompression failed)")
    fields, offset = [], 0
    for _, code, count in header.fields:
        field = np.frombuffer(raw, dtype="<" + code, count=header.points * count, offset=offset)
        fields.append(field.reshape(header.points, count))
        offset += header.points * count * np.dtype(code).itemsize
    return fields


def _lzf():
    try:
        import lzf
    except ImportError:
        raise FormatError(
            "PCD 'DATA binary_compressed' needs python-lzf, which is not installed: pip install 'pointclip_hf[pcd]'"
        ) from None
    return lzf


def _record_columns(header: PCDHeader, records: np.ndarray) -> dict[str, np.ndarray]:
    return {name: records[f"f{i}"] for i, (name, _, _) in enumerate(header.fields) if name != "_"}


def _assemble(header: PCDHeader, columns: dict[str, np.ndarray]) -> np.ndarray:
    out = [columns["x"][:, :1], columns["y"][:, :1], columns["z"][:, :1]]
    for name, code, count in header.fields:
        if name in ("x", "y", "z", "_"):
            continue
        if name in ("rgb", "rgba") and count == 1 and np.dtype(code).itemsize == 4:
            out.extend(_unpacked_colour(columns[name][:, 0], code, with_alpha=name == "rgba"))
        else:
            out.append(columns[name])
    with np.errstate(invalid="ignore"):
        return np.concatenate([np.asarray(block, dtype=np.float64) for block in out], axis=1)


def _unpacked_colour(packed: np.ndarray, code: str, with_alpha: bool) -> list[np.ndarray]:
    """The `r, g, b[, a]` columns (0..255) of a colour packed into the 32 bits of one field."""
    bits = np.ascontiguousarray(packed, dtype=np.dtype(code).newbyteorder("=")).view(np.uint32)
    channels = [(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF] + ([(bits >> 24) & 0xFF] if with_alpha else [])
    return [channel[:, None] for channel in channels]
