"""`.ply` files read with `plyfile`: any element order, ascii or binary; a `.ply` with faces is a mesh, sampled."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import FormatError, check_declared_size
from .meshes import sample_surface

_TYPE_BYTES = {
    "char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
    "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}  # fmt: skip
_FACE_PROPERTIES = ("vertex_indices", "vertex_index")


def load_ply(path: Path, num_samples: int, seed: int) -> np.ndarray:
    """The points of a `.ply`: its vertices (`x, y, z`, then other scalar properties), or, when it has faces,
    `num_samples` points sampled over the surface."""
    from plyfile import PlyData, PlyParseError

    data = path.read_bytes()
    _check_declared_sizes(data)
    try:
        with open(path, "rb") as handle:
            ply = PlyData.read(handle, mmap=False)
    except PlyParseError as error:
        raise FormatError(f"malformed or truncated PLY file ({error})") from None
    if "vertex" not in ply:
        raise FormatError("PLY file has no 'vertex' element")
    vertex = ply["vertex"].data
    if "face" in ply and ply["face"].count > 0:
        return sample_surface(_xyz(vertex), _triangles(ply["face"].data, len(vertex)), num_samples, seed)
    return _vertex_columns(vertex)


def _check_declared_sizes(data: bytes) -> None:
    """Refuse a header whose element counts need more bytes than the file holds, before `plyfile` allocates them."""
    if not re.match(rb"ply\r?\n", data):
        raise FormatError("not a PLY file (missing 'ply' magic line)")
    end = re.search(rb"^end_header[^\n]*(\r?\n|$)", data, re.MULTILINE)
    if end is None:
        raise FormatError("PLY header is not terminated (no 'end_header' line)")
    header = data[: end.start()].decode("ascii", "replace")
    binary = "format ascii" not in header
    body_bytes = len(data) - end.end()
    needed = 0
    for name, count, row_bytes in _elements(header, binary):
        check_declared_size(count * max(row_bytes, 8), f"PLY element {name!r} of {count:,} rows")
        needed += count * row_bytes
    if needed > body_bytes:
        raise FormatError(f"PLY file is truncated: the header needs at least {needed:,} bytes, {body_bytes:,} follow")


def _elements(header: str, binary: bool) -> list[tuple[str, int, int]]:
    """`(name, count, least bytes per row)` of each element declared in `header`."""
    elements: list[tuple[str, int, int]] = []
    for tokens in (line.split() for line in header.splitlines()):
        if len(tokens) == 3 and tokens[0] == "element" and tokens[2].isdigit():
            elements.append((tokens[1], int(tokens[2]), 0))
        elif tokens[:1] == ["property"] and elements:
            name, count, row_bytes = elements[-1]
            width = _TYPE_BYTES.get(tokens[2] if tokens[1:2] == ["list"] and len(tokens) > 2 else tokens[-2], 1)
            elements[-1] = (name, count, row_bytes + (width if binary else 2))
    return elements


def _xyz(vertex: np.ndarray) -> np.ndarray:
    names = vertex.dtype.names
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise FormatError(f"PLY vertex element lacks properties {missing} (has {list(names)})")
    return np.stack([vertex[axis].astype(np.float64) for axis in "xyz"], axis=1)


def _vertex_columns(vertex: np.ndarray) -> np.ndarray:
    if len(vertex) == 0:
        raise FormatError("file contains zero points")
    names = vertex.dtype.names
    if any(vertex.dtype[name].kind == "O" for name in names):
        raise FormatError("PLY vertex element has list properties, which are not supported")
    others = [name for name in names if name not in ("x", "y", "z")]
    return np.concatenate([_xyz(vertex)] + [vertex[name].astype(np.float64)[:, None] for name in others], axis=1)


def _triangles(face: np.ndarray, num_vertices: int) -> np.ndarray:
    """The faces as triangles `[F, 3]`: polygons fan-triangulated, one vectorised step per polygon size."""
    name = next((n for n in _FACE_PROPERTIES if n in (face.dtype.names or ())), None)
    if name is None:
        raise FormatError(f"PLY face element lacks a vertex_indices list (has {list(face.dtype.names or ())})")
    polygons = face[name]
    sizes = np.fromiter((len(polygon) for polygon in polygons), dtype=np.int64, count=len(polygons))
    triangles = []
    for size in np.unique(sizes):
        if size < 3:
            raise FormatError(f"PLY face with {size} vertices (at least 3 needed)")
        corners = np.stack(polygons[sizes == size]).astype(np.int64)
        fan = np.arange(1, size - 1)
        triangles.append(np.stack([corners[:, np.zeros_like(fan)], corners[:, fan], corners[:, fan + 1]], axis=2))
    triangles = np.concatenate([t.reshape(-1, 3) for t in triangles])
    if triangles.min() < 0 or triangles.max() >= num_vertices:
        raise FormatError(f"PLY face refers to a vertex outside 0..{num_vertices - 1}")
    return triangles
