"""`load_point_cloud`: one entry point that picks the reader by extension and checks what it returns."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from .arrays import load_npy, load_npz
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
        `np.ndarray` of shape `(N, C)`, float32, C-contiguous, `C >= 3`: `x, y, z`, then the other per-point
        channels the file carries.

    Raises:
        FileNotFoundError: `path` does not exist.
        TypeError: `num_mesh_samples` is not an int.
        PointCloudFileError (a `ValueError`): anything else: unsupported extension, not a regular file, malformed,
            truncated, empty, non-finite coordinates, or declared sizes over the caps of `pointclip_hf.io.errors`.
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
    except PointCloudFileError:
        raise
    except Exception as error:  # one error type for every failure of a reader, naming the file
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
    """Check the shape and cast to native float32; drop rows with non-finite xyz when `drop_invalid`, else refuse."""
    if points.ndim != 2:
        raise FormatError(f"expected a 2-D [N, C] array, got shape {points.shape}")
    if points.shape[1] < 3:
        raise FormatError(f"expected at least 3 columns (x, y, z) per point, got {points.shape[1]}")
    if points.shape[0] == 0:
        raise FormatError("file contains zero points")
    stored_finite = np.isfinite(points[:, :3]).all(axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        points = np.ascontiguousarray(points, dtype=np.float32)
    finite = np.isfinite(points[:, :3]).all(axis=1)
    overflowing = stored_finite & ~finite
    if overflowing.any():
        row = int(np.flatnonzero(overflowing)[0])
        raise FormatError(f"point {row} has a coordinate beyond the float32 range (|value| > 3.4e38)")
    if not finite.all():
        if not drop_invalid:
            raise FormatError(f"point {int(np.flatnonzero(~finite)[0])} has a NaN or infinite coordinate")
        points = np.ascontiguousarray(points[finite])
        if points.shape[0] == 0:
            raise FormatError("no point has finite x, y, z coordinates")
    return points
