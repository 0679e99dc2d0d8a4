"""Shapes that people made or scanned, from packages of the `test` extra, read offline (nothing is downloaded):

- `pyvista_mesh_path(name)`: pyvista's example meshes shipped inside the package (`airplane`, `ant`, `nut`, as
  `.ply`), located without importing pyvista (and VTK). The airplane is stored z up.
- `motorcycle_scan()`: a real partial scan, back-projected from the Middlebury 2014 *Motorcycle* stereo pair's
  ground-truth disparity that scikit-image ships (`skimage.data.stereo_motorcycle`), in camera coordinates
  (millimetres; x right, y down, z forward: up is -y), cut to the motorcycle.

Used by the tests and by `benchmarks/bench_sampling.py`; a test calls `pytest.importorskip` first.
"""

import importlib.util
from pathlib import Path

import numpy as np

# The calibration of the down-sampled pair, from `skimage.data.stereo_motorcycle`'s documentation.
MOTORCYCLE_FOCAL_PX = 994.978
MOTORCYCLE_PRINCIPAL_POINT_PX = (311.193, 254.877)
MOTORCYCLE_PRINCIPAL_POINT_DX_PX = 31.086
MOTORCYCLE_BASELINE_MM = 193.001
# The motorcycle stands nearer than the bench and shelves behind it, on a floor fitted in the bottom image rows.
_MOTORCYCLE_MAX_DEPTH_MM = 3000.0
_FLOOR_ROWS_FROM = 470
_ABOVE_FLOOR_MM = 15.0


def pyvista_mesh_path(name: str) -> Path:
    """The path of pyvista's shipped example mesh `name` (`"airplane"`, `"ant"`, `"nut"`); pyvista must be installed."""
    spec = importlib.util.find_spec("pyvista")
    if spec is None:
        raise ImportError("pyvista is not installed: pip install -e '.[test]'")
    return Path(spec.submodule_search_locations[0]) / "examples" / f"{name}.ply"


def motorcycle_scan() -> np.ndarray:
    """The motorcycle, `[N, 3]` float32 points in the left camera's frame (mm; up is -y), about 111,000 of them, in
    the image's row-major (scan-line) order."""
    from skimage.data import stereo_motorcycle

    _, _, disparity = stereo_motorcycle()
    rows, columns = np.nonzero(np.isfinite(disparity))
    depth = MOTORCYCLE_FOCAL_PX * MOTORCYCLE_BASELINE_MM / (disparity[rows, columns] + MOTORCYCLE_PRINCIPAL_POINT_DX_PX)
    centre_x, centre_y = MOTORCYCLE_PRINCIPAL_POINT_PX
    points = np.stack(
        [(columns - centre_x) * depth / MOTORCYCLE_FOCAL_PX, (rows - centre_y) * depth / MOTORCYCLE_FOCAL_PX, depth],
        axis=1,
    )
    floor = rows >= _FLOOR_ROWS_FROM
    design = np.c_[points[:, 0], points[:, 2], np.ones(len(points))]
    floor_plane, *_ = np.linalg.lstsq(design[floor], points[floor, 1], rcond=None)
    height_above_floor = design @ floor_plane - points[:, 1]
    keep = (depth < _MOTORCYCLE_MAX_DEPTH_MM) & (height_above_floor > _ABOVE_FLOOR_MM)
    return points[keep].astype(np.float32)


def sorted_along(points: np.ndarray, column: int) -> np.ndarray:
    """`points` stored in increasing order of one coordinate (a height or a scan direction, as scanners and LAS tiles
    store them), ties kept in their order."""
    return points[np.argsort(points[:, column], kind="stable")]
