"""LiDAR `.las` / `.laz` files read with `laspy` (the `las` extra; `.laz` decompressed by `lazrs`)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .errors import FormatError, check_declared_size

LIDAR_EXTENSIONS = (".las", ".laz")
_LAS_HEADER_BYTES, _LAS14_HEADER_BYTES = 227, 375
_VLR_HEADER_BYTES, _EVLR_HEADER_BYTES = 54, 60


def load_las(path: Path) -> np.ndarray:
    """The scaled `x, y, z` of a LAS/LAZ file, then its intensity, as float64 `[N, 4]`."""
    laspy = _laspy()
    _check_record_counts(path)
    try:
        with laspy.open(str(path), laz_backend=laspy.LazBackend.Lazrs) as reader:
            count = int(reader.header.point_count)
            record_bytes = int(reader.header.point_format.size)
            stored = path.stat().st_size if path.suffix.lower() == ".laz" else None
            check_declared_size(count * record_bytes, f"the LAS data of {count:,} points", stored)
            if stored is None and count * record_bytes > path.stat().st_size:
                raise FormatError(f"LAS file is truncated: its header declares {count:,} points")
            points = reader.read()
    except (FormatError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # laspy's errors, and lazrs's pyo3 PanicException (a BaseException) on bad data
        raise FormatError(f"could not read the LAS/LAZ file ({type(error).__name__}: {error})") from None
    if count == 0:
        raise FormatError("file contains zero points")
    columns = [np.asarray(points.x), np.asarray(points.y), np.asarray(points.z), np.asarray(points.intensity)]
    return np.stack([column.astype(np.float64) for column in columns], axis=1)


def _check_record_counts(path: Path) -> None:
    """Refuse a header declaring more variable-length records than the file can hold (laspy would loop over them)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(_LAS14_HEADER_BYTES)
    if len(header) < _LAS_HEADER_BYTES or header[:4] != b"LASF":
        raise FormatError("not a LAS/LAZ file (missing the 'LASF' signature or a truncated header)")
    (header_size,) = struct.unpack_from("<H", header, 94)
    (vlrs,) = struct.unpack_from("<I", header, 100)
    extended = header_size >= _LAS14_HEADER_BYTES and len(header) >= _LAS14_HEADER_BYTES
    (evlrs,) = struct.unpack_from("<I", header, 240) if extended else (0,)
    if vlrs * _VLR_HEADER_BYTES > size or evlrs * _EVLR_HEADER_BYTES > size:
        raise FormatError(f"LAS header declares {vlrs:,} variable-length records and {evlrs:,} extended ones, more "
                          f"than {size:,} bytes hold")  # fmt: skip
    if path.suffix.lower() == ".laz":
        _check_chunk_table(path, struct.unpack_from("<I", header, 96)[0], size)


def _check_chunk_table(path: Path, point_data_offset: int, size: int) -> None:
    """Refuse a LAZ chunk table declaring more chunks than the file has bytes (lazrs would abort the process trying
    to allocate it)."""
    with open(path, "rb") as handle:
        handle.seek(min(point_data_offset, size))
        (table_offset,) = struct.unpack("<q", handle.read(8).ljust(8, b"\0"))
        if table_offset == -1:  # written while streaming: the offset is in the last 8 bytes
            handle.seek(max(size - 8, 0))
            (table_offset,) = struct.unpack("<q", handle.read(8).ljust(8, b"\0"))
        if not 0 < table_offset <= size - 8:
            raise FormatError(f"LAZ chunk table offset {table_offset} lies outside the file ({size:,} bytes)")
        handle.seek(table_offset)
        _, chunks = struct.unpack("<II", handle.read(8))
    if chunks > size:
        raise FormatError(f"LAZ chunk table declares {chunks:,} chunks, more than the file's {size:,} bytes hold")


def _laspy():
    try:
        import laspy
    except ImportError:
        raise FormatError(
            "reading .las/.laz files needs laspy, which is not installed: pip install 'pointclip_hf[las]'"
        ) from None
    return laspy
