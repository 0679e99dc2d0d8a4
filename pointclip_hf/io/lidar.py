"""LiDAR `.las` / `.laz` files read with `laspy` (the `las` extra; `.laz` decompressed by `lazrs`).

Every size the file declares is checked here before laspy or lazrs allocates it: the variable-length records, the
point count, the LAZ item list, the chunk table and, for LAS 1.4 layered chunks, each chunk's layer sizes (lazrs
aborts the whole process, with no Python exception, when an allocation fails).
"""

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrays import needs_float64
from .errors import FormatError, check_declared_size, check_rules

LIDAR_EXTENSIONS = (".las", ".laz")
_LAS_HEADER_BYTES, _LAS14_HEADER_BYTES = 227, 375
_VLR = struct.Struct("<H16sHH32s")
_EVLR = struct.Struct("<H16sHQ32s")
_LASZIP_VLR = (b"laszip encoded", 22204)
_LASZIP_RECORD = struct.Struct("<HHBBHIIqqH")
_VARIABLE_CHUNKS = (0, 0xFFFFFFFF)
_LAYERED = 3
# LAZ item types: fixed sizes, and the number of layers of a layered (LAS 1.4) item; extra bytes have one per byte.
_ITEM_SIZES = {6: 20, 7: 8, 8: 6, 9: 29, 10: 30, 11: 6, 12: 8, 13: 29}
_ITEM_LAYERS = {10: 9, 11: 1, 12: 2, 13: 1}
_EXTRA_BYTES_ITEMS = (0, 14)


@dataclass
class LASLayout:
    """Where a LAS file's parts lie: the point data offset, record length, and the LasZip VLR's record, if any."""

    point_data_offset: int
    record_length: int
    laszip_record: bytes | None


def load_las(path: Path) -> np.ndarray:
    """The scaled `x, y, z` of a LAS/LAZ file, then its intensity, `[N, 4]`."""
    laspy = _laspy()
    layout = _check_layout(path)
    try:
        with laspy.open(str(path), laz_backend=laspy.LazBackend.Lazrs) as reader:
            count = int(reader.header.point_count)
            size = path.stat().st_size
            record_bytes = layout.record_length
            if layout.laszip_record is None:
                check_declared_size(count * record_bytes, f"the LAS data of {count:,} points")
                if layout.point_data_offset + count * record_bytes > size:
                    raise FormatError(f"LAS file is truncated: its header declares {count:,} points")
            else:
                check_declared_size(count * record_bytes, f"the LAZ data of {count:,} points", size)
                _check_laz_chunks(path, layout, count)
            points = reader.read()
    except (FormatError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # laspy's errors, and lazrs's pyo3 PanicException (a BaseException) on bad data
        raise FormatError(f"could not read the LAS/LAZ file ({type(error).__name__}: {error})") from None
    return _scaled_columns(points.points.array, points.header)  # no points, or bad scales: refused by the reader


def _scaled_columns(records: np.ndarray, header) -> np.ndarray:
    """`x, y, z` (laspy's `X * scale + offset`) and intensity, in float32 when the header's bounds show float32
    resolves the cloud, else float64, so that no pass over the points is needed to find out (scaled integers are
    finite, unless a scale or an offset is not, and `load_point_cloud` refuses non-finite coordinates; bounds that a
    writer got wrong can only cost precision)."""
    scales, offsets = np.asarray(header.scales, float), np.asarray(header.offsets, float)
    low, high = np.asarray(header.mins, float), np.asarray(header.maxs, float)
    largest = float(np.maximum(np.abs(low), np.abs(high)).max())
    wide = not np.isfinite(largest) or needs_float64(largest, float((high - low).max()))
    out = np.empty((len(records), 4), dtype=np.float64 if wide else np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # a value beyond float32 becomes inf, refused as such
        for column, (name, scale, offset) in enumerate(zip("XYZ", scales, offsets)):
            out[:, column] = records[name] * scale + offset
    out[:, 3] = records["intensity"]
    return out


def _check_layout(path: Path) -> LASLayout:
    """Refuse variable-length records (plain or extended) that overrun the file (laspy would loop over them, or
    allocate what they declare); return the layout, with the LasZip VLR when the points are compressed."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(_LAS14_HEADER_BYTES)
        padded = header.ljust(_LAS14_HEADER_BYTES, b"\0")
        header_size, point_data_offset, vlr_count = struct.unpack_from("<HII", padded, 94)
        point_format, record_length = struct.unpack_from("<BH", padded, 104)
        extended = header_size >= _LAS14_HEADER_BYTES and len(header) >= _LAS14_HEADER_BYTES
        evlr_start, evlr_count = struct.unpack_from("<QI", header, 235) if extended else (0, 0)
        check_rules([
            (len(header) >= _LAS_HEADER_BYTES and header[:4] == b"LASF",
             "not a LAS/LAZ file (missing the 'LASF' signature or a truncated header)"),
            (vlr_count * _VLR.size <= size and evlr_count * _EVLR.size <= size,
             f"LAS header declares {vlr_count:,} variable-length records and {evlr_count:,} extended ones, more "
             f"than {size:,} bytes hold"),
        ])  # fmt: skip
        laszip_record = _walk_records(handle, _VLR, header_size, vlr_count, size)
        _walk_records(handle, _EVLR, evlr_start, evlr_count, size)
    compressed = point_format & 0x80 or path.suffix.lower() == ".laz"
    return LASLayout(point_data_offset, record_length, laszip_record if compressed else None)


def _walk_records(handle, record: struct.Struct, start: int, count: int, size: int) -> bytes | None:
    """Walk the `count` variable-length record headers (`_VLR`) or extended ones (`_EVLR`) from `start`, refusing
    one that runs past the file's end; return the LasZip VLR's record."""
    laszip, position = None, start
    for index in range(count):
        handle.seek(position)
        _, user_id, record_id, length, _ = record.unpack(handle.read(record.size).ljust(record.size, b"\0"))
        if position + record.size + length > size:
            kind = "extended variable-length record" if record is _EVLR else "variable-length record"
            raise FormatError(f"LAS {kind} {index} at byte {position:,} declares {length:,} bytes past the file's end")
        if (user_id.rstrip(b"\0"), record_id) == _LASZIP_VLR and record is _VLR:
            laszip = handle.read(length)
        position += record.size + length
    return laszip


def _check_laz_chunks(path: Path, layout: LASLayout, point_count: int) -> None:
    """Check what lazrs will allocate: the item list against the record length, the chunk table's entry count,
    and, for layered chunks, every chunk's layer sizes against the bytes that follow it."""
    compressor, chunk_size, items = _laszip_items(layout.laszip_record or b"", layout.record_length)
    if compressor not in (2, _LAYERED):
        return
    size = path.stat().st_size
    with open(path, "rb") as handle:
        table_offset = _chunk_table_offset(handle, layout.point_data_offset, size)
        if table_offset is not None:
            handle.seek(table_offset + 4)
            (chunks,) = struct.unpack("<I", handle.read(4).ljust(4, b"\0"))
            most = min((table_offset - layout.point_data_offset) // max(layout.record_length, 1), point_count + 1)
            if chunks > most:  # every chunk holds a point, and stores its first point whole
                raise FormatError(f"LAZ chunk table declares {chunks:,} chunks, more than the file's points or bytes "
                                  f"hold (at most {most:,})")  # fmt: skip
        if compressor == _LAYERED:
            variable = chunk_size in _VARIABLE_CHUNKS
            table_counts = _table_point_counts(handle, layout) if variable and table_offset is not None else None
            _check_layers(handle, layout.point_data_offset, items, point_count, chunk_size, table_counts)


def _laszip_items(record: bytes, record_length: int) -> tuple[int, int, list[tuple[int, int]]]:
    """`(compressor, chunk size, (type, size) of each LAZ item)` of the LasZip VLR's `record`: complete, with items
    of known types and their fixed sizes, adding up to the LAS header's `record_length`."""
    compressor, *_, chunk_size, _, _, count = _LASZIP_RECORD.unpack_from(record.ljust(_LASZIP_RECORD.size, b"\0"))
    padded = record.ljust(_LASZIP_RECORD.size + 6 * count, b"\0")
    items = [struct.unpack_from("<HH", padded, _LASZIP_RECORD.size + 6 * i) for i in range(count)]
    total = sum(size for _, size in items)
    check_rules([
        (len(record) >= _LASZIP_RECORD.size + 6 * count,
         f"LAZ file lacks a complete LasZip variable-length record ({len(record):,} bytes for {count} items)"),
        *(((kind in _ITEM_SIZES or kind in _EXTRA_BYTES_ITEMS) and _ITEM_SIZES.get(kind, size) == size,
           f"LAZ item of type {kind} and size {size} is not a known point field") for kind, size in items),
        (total == record_length, f"LAZ items describe {total}-byte points, the LAS header {record_length}-byte points"),
    ])  # fmt: skip
    return compressor, chunk_size, items


def _chunk_table_offset(handle, data_start: int, size: int) -> int | None:
    """Where lazrs looks for the chunk table: the offset stored at the start of the points, or, when that is not
    past them (a file written as a stream), the one in the file's last 8 bytes; `None` when neither is."""
    for position in (data_start, size - 8):
        handle.seek(max(position, 0))
        (offset,) = struct.unpack("<q", handle.read(8).ljust(8, b"\0"))
        if offset > data_start:
            if offset > size - 8:
                raise FormatError(f"LAZ chunk table offset {offset:,} lies outside the file ({size:,} bytes)")
            return offset
    return None


def _table_point_counts(handle, layout: LASLayout) -> list[int]:
    """The chunk table's point counts, decoded by lazrs (its entry count is bounded by then)."""
    import lazrs

    handle.seek(layout.point_data_offset)
    return [int(points) for points, _ in lazrs.read_chunk_table(handle, lazrs.LazVlr(layout.laszip_record))]


def _check_layers(handle, data_start: int, items, point_count: int, chunk_size: int, table_counts) -> None:
    """Walk the layered chunks as lazrs reads them (each starts where the previous one's layers end, and holds the
    fixed chunk size, its chunk table entry or its own count of points) and refuse a chunk whose layers need more
    bytes than the file has left."""
    first_point = sum(item_size for _, item_size in items)
    layers = sum(_ITEM_LAYERS.get(kind, item_size) for kind, item_size in items)
    size = handle.seek(0, 2)
    position, remaining, chunk = data_start + 8, point_count, 0
    while remaining > 0:
        handle.seek(position + first_point)
        raw = handle.read(4 + 4 * layers)
        if len(raw) < 4 + 4 * layers or (table_counts is not None and chunk >= len(table_counts)):
            return  # lazrs stops at the end of the file, or at the end of its chunk table, before it allocates
        embedded, *sizes = struct.unpack(f"<{1 + layers}I", raw)
        position += first_point + len(raw)
        if sum(sizes) > size - position:
            raise FormatError(f"LAZ chunk {chunk} declares layers of {sum(sizes):,} bytes, {size - position:,} "
                              "bytes follow")  # fmt: skip
        position += sum(sizes)
        if table_counts is not None:
            taken = table_counts[chunk]
        else:
            taken = embedded if chunk_size in _VARIABLE_CHUNKS else chunk_size
        if taken == 0:
            return  # lazrs takes every remaining point from this chunk
        remaining -= taken
        chunk += 1


def _laspy():
    try:
        import laspy
    except ImportError:
        raise FormatError(
            "reading .las/.laz files needs laspy, which is not installed: pip install 'pointclip_hf[las]'"
        ) from None
    return laspy
