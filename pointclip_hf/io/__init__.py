"""Point-cloud file readers, one module per format family; `load_point_cloud` picks one by extension.

| extensions | read with |
| --- | --- |
| `.npy`, `.npz` | numpy (never unpickled; declared shapes checked before allocation) |
| `.xyz`, `.txt`, `.pts`, `.csv` | numpy `loadtxt` |
| `.ply` (points, or a mesh when it has faces) | `plyfile`; meshes sampled with `trimesh` |
| `.pcd` (`ascii`, `binary`, `binary_compressed`) | numpy; LZF by `python-lzf` (extra `pcd`) |
| `.off`, `.obj`, `.stl`, `.glb`, `.gltf` | `trimesh` (scenes flattened, sampled by area) |
| `.las`, `.laz` | `laspy` with `lazrs` (extra `las`) |
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
