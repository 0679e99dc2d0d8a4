"""`.pcd` files (PCL): `DATA ascii`, `binary` and `binary_compressed` (LZF, needs the `pcd` extra)."""

import re
import struct
from dataclasses import dataclass

import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured

from .arrays import float_dtype_for
from .errors import FormatError, check_declared_size, check_rules
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
    fields = _compressed_fields(header, body)  # binary_compressed: the header check allows no other DATA mode
    if _plain(header):  # one pass over the decompressed fields
        order = _column_order(header)
        out = np.empty((header.points, len(order)), dtype=float_dtype_for(fields[i].dtype for i in order))
        for column, index in enumerate(order):
            out[:, column] = fields[index][:, 0]
        return out
    names = [name for name, _, _ in header.fields]
    return _assemble(header, {name: field for name, field in zip(names, fields) if name != "_"})


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
    text = data[: match.end()].decode("ascii", "replace")
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, *values = line.split()
            entries[key.upper()] = values
    header = PCDHeader(*_check_header(entries, ascii_only="\ufffd" not in text))
    return header, memoryview(data)[match.end() :]  # binary bodies are read in place


def _check_header(entries: dict[str, list[str]], ascii_only: bool) -> tuple[list[tuple[str, str, int]], int, str]:
    """The fields (name, numpy type code, count), point count and DATA mode of a header, refused (every problem
    named) unless they make a readable cloud."""
    names, sizes, kinds = (entries.get(key, []) for key in ("FIELDS", "SIZE", "TYPE"))
    counts = entries.get("COUNT", ["1"] * len(names))
    codes = [_TYPES.get((kind.upper(), int(size) if size.isdigit() else -1)) for size, kind in zip(sizes, kinds)]
    unsupported = [f"{name!r} (TYPE {kind} SIZE {size})" for name, size, kind, code in zip(names, sizes, kinds, codes)
                   if code is None]  # fmt: skip
    named = [name for name in names if name != "_"]
    numbers = {key: entries[key] for key in ("WIDTH", "HEIGHT", "POINTS") if key in entries}
    bad_numbers = [key for key, value in numbers.items() if len(value) != 1 or not re.fullmatch(r"\d+", value[0])]
    width, height, points = (int(numbers[key][0]) if key in numbers and key not in bad_numbers else None
                             for key in ("WIDTH", "HEIGHT", "POINTS"))  # fmt: skip
    height = 1 if height is None else height
    mode = (entries.get("DATA") or [""])[0].lower()
    total = points if points is not None else None if width is None else width * height
    check_rules([
        (ascii_only, "PCD header contains non-ASCII bytes"),
        (all(key in entries for key in ("FIELDS", "SIZE", "TYPE")), "PCD header lacks a FIELDS, SIZE or TYPE line"),
        (len(names) == len(sizes) == len(kinds) == len(counts),
         "PCD header FIELDS/SIZE/TYPE/COUNT lines have different lengths"),
        (all(axis in names for axis in "xyz"), f"PCD file lacks fields {[a for a in 'xyz' if a not in names]} "
                                               f"(has {names})"),
        (len(set(named)) == len(named), f"PCD header has duplicate fields {names}"),
        (not unsupported, f"PCD fields {', '.join(unsupported)} have unsupported types"),
        (all(count.isdigit() and int(count) >= 1 for count in counts),
         f"PCD header COUNT {' '.join(counts)!r} is not a list of positive integers"),
        *((False, f"PCD header {key} {' '.join(numbers[key])!r} is not a non-negative integer") for key in bad_numbers),
        (points is not None or width is not None or bool(bad_numbers), "PCD header lacks both POINTS and WIDTH"),
        (None in (points, width) or width * height == points,
         f"PCD header POINTS {points} does not match WIDTH*HEIGHT {width}*{height}"),
        (total != 0, "file contains zero points"),
        (mode in ("ascii", "binary", "binary_compressed"), f"unsupported PCD DATA type {mode!r}"),
    ])  # fmt: skip
    fields = [(name, code, int(count)) for name, code, count in zip(names, codes, counts)]
    return fields, total, mode


def _ascii_values(header: PCDHeader, body: bytes) -> np.ndarray:
    """The ascii rows as one float64 table, checked against the header's point count and field widths."""
    width = sum(count for *_, count in header.fields)
    values = read_table(body)
    if values is None or values.shape != (header.points, width):  # NaN points, or malformed: parsed line by line
        rows = [line for line in body.decode("ascii", "replace").splitlines() if line.strip()]
        values = parse_rows(rows, "PCD") if rows else np.zeros((0, width))  # a non-ASCII byte is a bad number there
    if values.shape != (header.points, width):
        raise FormatError(
            f"PCD data has {len(values)} rows of {values.shape[1]} values, the header declares POINTS "
            f"{header.points} of {width} values (file truncated?)"
        )
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
    stored, expanded = struct.unpack("<II", bytes(body[:8]).ljust(8, b"\0"))
    needed = header.points * header.record_dtype().itemsize
    check_rules([
        (len(body) >= 8, "PCD binary_compressed data lacks its size words"),
        (expanded == needed, f"PCD binary_compressed data expands to {expanded} bytes; {header.points} points need "
                             f"{needed}"),
        (stored <= len(body) - 8, f"PCD file is truncated: {stored} compressed bytes declared, "
                                  f"{max(len(body) - 8, 0)} follow"),
    ])  # fmt: skip
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
