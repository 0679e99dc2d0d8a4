"""Point-cloud file readers, one module per format family; `load_point_cloud` picks one by extension.

| extensions | read with |
| --- | --- |
| `.npy`, `.npz` | numpy (never unpickled; declared shapes checked before allocation) |
| `.xyz`, `.txt`, `.pts`, `.csv` | pandas' C parser; numpy `loadtxt` names a malformed row |
| `.ply` points | `plyfile` (binary memory-mapped); ascii as one pandas table |
| `.ply` with faces, `.obj`, `.stl`, `.glb`, `.gltf` | `trimesh` (scenes flattened; no texture or material file read) |
| `.off` | parsed here (pandas tables; a row cut short is named) |
| `.pcd` (`ascii`, `binary`, `binary_compressed`) | numpy, pandas; LZF by `python-lzf` (extra `pcd`) |
| `.las`, `.laz` | `laspy` with `lazrs` (extra `las`), every declared size checked first |

Meshes are sampled by area (`meshes.sample_surface`). A cloud comes back in float32, or in float64 when float32 would
blur it (`arrays.FLOAT32_STEPS_BITS`).
"""

from .errors import DEFAULT_MAX_CLOUD_BYTES, DEFAULT_MAX_EXPANSION, PointCloudFileError
from .reader import SUPPORTED_EXTENSIONS, load_point_cloud

__all__ = [
    "DEFAULT_MAX_CLOUD_BYTES",
    "DEFAULT_MAX_EXPANSION",
    "SUPPORTED_EXTENSIONS",
    "PointCloudFileError",
    "load_point_cloud",
]
