"""`load_point_cloud`: one entry point that picks the reader by extension and checks what it returns."""

import errno
import os
from pathlib import Path

import numpy as np

from .arrays import float_dtype_for, load_npy, load_npz, needs_float64
from .errors import FormatError, PointCloudFileError
from .lidar import LIDAR_EXTENSIONS, load_las
from .meshes import MESH_EXTENSIONS, load_mesh
from .pcd import load_pcd
from .ply import load_ply
from .text import TEXT_EXTENSIONS, load_text

SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    (".npy", ".npz") + TEXT_EXTENSIONS + (".ply", ".pcd") + MESH_EXTENSIONS + LIDAR_EXTENSIONS
)
_SAMPLED_EXTENSIONS = MESH_EXTENSIONS + (".ply",)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def load_point_cloud(path: str | os.PathLike, num_mesh_samples: int = 2048, seed: int = 0) -> np.ndarray:
    """Load a point cloud from `path`; meshes are sampled by surface area to `num_mesh_samples` points.

    Args:
        path (`str` or `os.PathLike`): the file; its extension (any case) picks the reader, one of
            `SUPPORTED_EXTENSIONS`.
        num_mesh_samples (`int`, *optional*, defaults to 2048): points drawn from the surface of a mesh (`.off`,
            `.obj`, `.stl`, `.glb`, `.gltf`, or a `.ply` with faces); unused for point formats.
        seed (`int`, *optional*, defaults to 0): seed of the surface sampling: the same file and seed give the same
            points.

    Returns:
        `np.ndarray` of shape `(N, C)`, C-contiguous, `C >= 3`: `x, y, z`, then the other per-point channels the
        file carries. float32, except float64 for a file stored in wider values whose cloud float32 cannot resolve
        at its own scale (fewer than `2**arrays.FLOAT32_STEPS_BITS` steps across it: a georeferenced scan far from
        the origin); the processor centres such a cloud in float64 before it casts.

    Raises:
        FileNotFoundError: `path` does not exist.
        TypeError: `num_mesh_samples` is not an int.
        PointCloudFileError (a `ValueError`): anything else: unsupported extension, not a regular file, malformed,
            truncated, empty, non-finite coordinates, or declared sizes (or a text file's size) over the caps of
            `pointclip_hf.io.errors`.
    """
    path = Path(os.fspath(path))
    ext = path.suffix.lower()
    check_point_cloud_path(path)
    if ext in _SAMPLED_EXTENSIONS:
        _check_sample_count(num_mesh_samples)
    try:
        if path.stat().st_size == 0:
            raise FormatError("file is empty (zero points)")
        return _finalize(_read(path, ext, int(num_mesh_samples), seed), drop_invalid=ext == ".pcd")
    except Exception as error:  # one error type for every failure of a reader (a library's included), naming the file
        reason = str(error) if isinstance(error, FormatError) else f"{type(error).__name__}: {error}"
        raise PointCloudFileError(f"Cannot load point cloud {str(path)!r}: {reason}") from error


def check_point_cloud_path(path: Path) -> None:
    """Raise unless `path` is an existing regular file with a supported extension (any case)."""
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise PointCloudFileError(
            f"Unsupported point cloud file extension {ext or '(none)'!r} for {str(path)!r}; "
            f"supported extensions are: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "Point cloud file not found", str(path))
    if not path.is_file():
        raise PointCloudFileError(f"Cannot load point cloud {str(path)!r}: not a regular file")


def _check_sample_count(num_mesh_samples) -> None:
    if isinstance(num_mesh_samples, bool) or not isinstance(num_mesh_samples, (int, np.integer)):
        raise TypeError(f"num_mesh_samples must be an int, got {num_mesh_samples!r}")
    if num_mesh_samples <= 0:
        raise PointCloudFileError(f"num_mesh_samples must be positive, got {num_mesh_samples}")


def _read(path: Path, ext: str, num_samples: int, seed: int) -> np.ndarray:
    if ext == ".npy":
        return load_npy(path)
    if ext == ".npz":
        return load_npz(path)
    if ext in TEXT_EXTENSIONS:
        return load_text(path, ext)
    if ext == ".ply":
        return load_ply(path, num_samples, seed)
    if ext == ".pcd":
        return load_pcd(path.read_bytes())
    if ext in LIDAR_EXTENSIONS:
        return load_las(path)
    return load_mesh(path, ext, num_samples, seed)


def _finalize(points: np.ndarray, drop_invalid: bool) -> np.ndarray:
    """Check the shape and the coordinates; return native float32, or float64 when float32 would blur the cloud.

    Rows with non-finite x, y, z are dropped when `drop_invalid`, else refused. The checks reduce whole contiguous
    blocks (a strided per-column reduction of a row-major array costs ten times the read of a `.npy`), or the columns
    of a column-major one.
    """
    if points.ndim != 2 or points.shape[1] < 3 or points.shape[0] == 0:
        shaped = points.ndim == 2 and points.shape[1] >= 3
        raise FormatError("file contains zero points" if shaped else "expected a 2-D array of at least 3 columns "
                          f"(x, y, z) per point, got shape {points.shape}")  # fmt: skip
    if not points.dtype.isnative:
        points = points.astype(points.dtype.newbyteorder("="))
    if float_dtype_for([points.dtype]) == np.float32:  # float32 holds every value: one summing pass checks them all
        points = np.ascontiguousarray(points, dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.add.reduce(points, axis=None)
        return points if np.isfinite(total) else _finite_rows(points, drop_invalid)
    if not points.flags.f_contiguous:  # a pandas table is column-major: kept so until the one cast below
        points = np.ascontiguousarray(points)
    low, high = _column_range(points)
    if not (np.isfinite(low[:3]).all() and np.isfinite(high[:3]).all()):
        points = _finite_rows(points, drop_invalid)
        low, high = _column_range(points)
    largest = float(np.maximum(np.abs(low[:3]), np.abs(high[:3])).max())
    if largest > _FLOAT32_MAX:
        row = int(np.flatnonzero((np.abs(points[:, :3]) > _FLOAT32_MAX).any(axis=1))[0])
        raise FormatError(f"point {row} has a coordinate beyond the float32 range (|value| > 3.4e38)")
    dtype = np.float64 if needs_float64(largest, float((high[:3] - low[:3]).max())) else np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        return _row_major(points, dtype)


def _row_major(points: np.ndarray, dtype: type) -> np.ndarray:
    """`points` C-contiguous in `dtype`; a column-major table is copied column by column (twice as fast as numpy's
    strided cast of the whole)."""
    if points.flags.c_contiguous or not points.flags.f_contiguous:
        return np.ascontiguousarray(points, dtype=dtype)
    out = np.empty(points.shape, dtype=dtype)
    for column in range(points.shape[1]):
        out[:, column] = points[:, column]
    return out


def _column_range(points: np.ndarray, block_rows: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-column minimum and maximum of a C- or F-contiguous `[N, C]` array (NaN propagates); a C-contiguous one is
    reduced block-wise."""
    if points.flags.f_contiguous and not points.flags.c_contiguous:
        return points.min(axis=0), points.max(axis=0)
    rows = len(points) // block_rows * block_rows
    blocks = points[:rows].reshape(-1, block_rows * points.shape[1])
    parts_low, parts_high = [points[rows:]], [points[rows:]]
    if rows:
        parts_low.append(blocks.min(axis=0).reshape(block_rows, -1))
        parts_high.append(blocks.max(axis=0).reshape(block_rows, -1))
    return np.concatenate(parts_low).min(axis=0), np.concatenate(parts_high).max(axis=0)


def _finite_rows(points: np.ndarray, drop_invalid: bool) -> np.ndarray:
    """`points` without its rows of non-finite x, y, z when `drop_invalid` (refused otherwise; a sum that overflowed
    over finite values leaves them as they are)."""
    finite = np.isfinite(points[:, :3]).all(axis=1)
    if finite.all():
        return points
    if not (drop_invalid and finite.any()):
        which = "every point has" if drop_invalid else f"point {int(np.flatnonzero(~finite)[0])} has"
        raise FormatError(f"{which} a NaN or infinite coordinate")
    return np.ascontiguousarray(points[finite])
