"""LiDAR `.las` / `.laz` files read with `laspy` (the `las` extra; `.laz` decompressed by `lazrs`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import FormatError, check_declared_size

LIDAR_EXTENSIONS = (".las", ".laz")


def load_las(path: Path) -> np.ndarray:
    """The scaled `x, y, z` of a LAS/LAZ file, then its intensity, as float64 `[N, 4]`."""
    laspy = _laspy()
    try:
        with laspy.open(str(path)) as reader:
            count = int(reader.header.point_count)
            record_bytes = int(reader.header.point_format.size)
            stored = path.stat().st_size if path.suffix.lower() == ".laz" else None
            check_declared_size(count * record_bytes, f"the LAS data of {count:,} points", stored)
            if stored is None and count * record_bytes > path.stat().st_size:
                raise FormatError(f"LAS file is truncated: its header declares {count:,} points")
            points = reader.read()
    except FormatError:
        raise
    except Exception as error:  # laspy raises LaspyException, ValueError, struct and lazrs errors
        raise FormatError(f"could not read the LAS/LAZ file ({type(error).__name__}: {error})") from None
    if count == 0:
        raise FormatError("file contains zero points")
    columns = [np.asarray(points.x), np.asarray(points.y), np.asarray(points.z), np.asarray(points.intensity)]
    return np.stack([column.astype(np.float64) for column in columns], axis=1)


def _laspy():
    try:
        import laspy
    except ImportError:
        raise FormatError(
            "reading .las/.laz files needs laspy, which is not installed: pip install 'pointclip_hf[las]'"
        ) from None
    return laspy
