"""Triangle meshes (`.off` parsed here; `.obj`, `.stl`, `.glb`, `.gltf` by `trimesh`), sampled by area to points."""

import json
import os
import re
import stat
import struct
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from .errors import FormatError, check_rules
from .text import parse_rows, read_table

MESH_EXTENSIONS = (".off", ".obj", ".stl", ".glb", ".gltf")
_GLB_HEADER = struct.Struct("<4sII")
_GLB_CHUNK = struct.Struct("<I4s")


def load_mesh(path: Path, ext: str, num_samples: int, seed: int) -> np.ndarray:
    """`num_samples` points sampled uniformly over the surface of the mesh (or the flattened scene) in `path`."""
    if ext == ".off":
        vertices, faces = read_off(path.read_bytes())
    else:
        vertices, faces = _load_with_trimesh(path, ext)
    return sample_surface(vertices, faces, num_samples, seed)


def _load_with_trimesh(path: Path, ext: str) -> tuple[np.ndarray, np.ndarray]:
    import trimesh  # hard dependency; imported lazily to keep package import fast

    if ext == ".stl":
        _check_binary_stl_size(path)
    if ext in (".glb", ".gltf"):
        _check_external_files(path, ext)
    options = {"skip_materials": True} if ext in (".obj", ".glb", ".gltf", ".ply") else {}  # no texture files read
    try:
        scene = trimesh.load_scene(str(path), file_type=ext[1:], process=False, **options)
        return _scene_triangles(trimesh, scene)
    except Exception as error:  # trimesh raises many types (NameError, IndexError, KeyError, ...)
        raise FormatError(f"could not parse the {ext[1:].upper()} mesh ({type(error).__name__}: {error})") from None


def _scene_triangles(trimesh, scene) -> tuple[np.ndarray, np.ndarray]:
    """The vertices and triangles of every mesh of `scene`, placed by its node transforms, as one mesh (what
    `Scene.to_mesh` gives, without its copies and hashing of every array)."""
    vertices, faces, offset = [], [], 0
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry.get(name)
        if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
            continue
        corners = np.asarray(geometry.vertices, dtype=np.float64)
        if not np.array_equal(transform, np.eye(4)):
            corners = trimesh.transformations.transform_points(corners, transform)
        vertices.append(corners)
        faces.append(np.asarray(geometry.faces, dtype=np.int64) + offset)
        offset += len(corners)
    if not faces:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(vertices), np.concatenate(faces)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, num_samples: int, seed: int) -> np.ndarray:
    """`num_samples` points drawn uniformly by area over the triangles `faces` of `vertices`, reproducible by `seed`.

    The draws are those of `trimesh.sample.sample_surface` (the same points for the same seed), with the edge vectors
    formed for the drawn triangles only rather than for every face.

    Args:
        vertices (`np.ndarray` of shape `(V, 3)`): vertex coordinates.
        faces (`np.ndarray` of shape `(F, 3)`): vertex indices of each triangle.
        num_samples (`int`): how many points to draw.
        seed (`int`): seed of the draw.

    Returns:
        `np.ndarray` of shape `(num_samples, 3)`, float64.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    bad = ~np.isfinite(vertices).all(axis=1)
    first_bad = int(np.argmax(bad)) if bad.any() else None
    check_rules([
        (len(faces) > 0, "mesh has no faces to sample points from"),
        (len(faces) == 0 or 0 <= faces.min() and faces.max() < len(vertices),
         f"a mesh face refers to a vertex outside 0..{len(vertices) - 1}"),
        (not bad.any(), f"mesh has {int(bad.sum())} vertices with NaN or infinite coordinates "
                        f"(first: {first_bad})"),
    ])  # fmt: skip
    origins, seconds, thirds = (vertices[faces[:, corner]] for corner in range(3))
    crosses = np.cross(seconds - origins, thirds - seconds)  # as trimesh's face areas, summed in the same order
    cumulative = np.cumsum(np.sqrt(crosses[:, 0] ** 2 + crosses[:, 1] ** 2 + crosses[:, 2] ** 2) / 2.0)
    area = float(cumulative[-1])
    if not np.isfinite(area) or area <= 0.0:
        raise FormatError(f"mesh has zero or invalid surface area ({area})")
    random = np.random.default_rng(seed)
    drawn = np.searchsorted(cumulative, random.random(num_samples) * area)
    edges = np.stack([seconds[drawn], thirds[drawn]], axis=1) - origins[drawn, None]
    lengths = random.random((num_samples, 2, 1))
    lengths[lengths.sum(axis=1).reshape(-1) > 1.0] -= 1.0
    return (edges * np.abs(lengths)).sum(axis=1) + origins[drawn]


def fan_triangles(polygons: np.ndarray) -> np.ndarray:
    """The triangles `[F * (k - 2), 3]` of polygons `[F, k >= 3]` of vertex indices, each fan-triangulated from its
    first corner."""
    fan = np.arange(1, polygons.shape[1] - 1)
    triangles = np.stack([polygons[:, np.zeros_like(fan)], polygons[:, fan], polygons[:, fan + 1]], axis=2)
    return triangles.reshape(-1, 3).astype(np.int64)


def read_off(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The vertices `[V, 3]` and triangles `[T, 3]` of an OFF file (`OFF`, `COFF`, `NOFF`, ...: columns after x, y, z
    and face colours are ignored; polygons are fan-triangulated). Every row the header declares must be complete."""
    if b"#" in data:
        data = re.sub(rb"#[^\r\n]*", b"", data)
    rows = [row for row in data.splitlines() if row.strip()] or [b""]
    magic, *counts = rows[0].split() or [b""]
    counts, start = (counts, 1) if counts else (rows[1].split() if len(rows) > 1 else [], 2)
    num_vertices, num_faces = (int(count) if count.isdigit() else 0 for count in (counts + [b"", b""])[:2])
    check_rules([
        (magic.upper().endswith(b"OFF") and b"4" not in magic and b"n" not in magic,
         "not an OFF file (missing the 'OFF' first line; 4OFF and nOFF are not supported)"),
        (len(counts) >= 2 and counts[0].isdigit() and counts[1].isdigit(),
         "OFF header lacks the non-negative vertex and face counts"),
        (len(rows) - start >= num_vertices + num_faces,
         f"OFF file is truncated: the header declares {num_vertices} vertices and {num_faces} faces, "
         f"{len(rows) - start} rows follow"),
    ])  # fmt: skip
    vertices = _off_vertices(rows[start : start + num_vertices])
    return vertices, _off_triangles(rows[start + num_vertices : start + num_vertices + num_faces])


def _off_vertices(rows: list[bytes]) -> np.ndarray:
    table = read_table(b"\n".join(rows)) if rows else np.zeros((0, 3))
    if table is not None and table.shape[1] >= 3:
        return table[:, :3]
    return parse_rows([b" ".join(row.split()[:3]).decode("utf-8", "replace") for row in rows], "OFF vertex")


def _off_triangles(rows: list[bytes]) -> np.ndarray:
    """Triangles of the face rows `n i_1 ... i_n [colour]`: one table when every face is an n-gon without colour,
    else row by row, naming a row cut short."""
    table = read_table(b"\n".join(rows)) if rows else None
    if table is not None and table.shape[1] >= 4 and (table[:, 0] == table.shape[1] - 1).all():
        return fan_triangles(table[:, 1:].astype(np.int64))
    polygons: dict[int, list[list[int]]] = {}
    for index, row in enumerate(rows):
        size, *tokens = row.split()
        size = int(size) if size.isdigit() else 0
        corners = tokens[:size]
        if size < 3 or len(corners) < size or not all(corner.isdigit() for corner in corners):
            raise FormatError(f"OFF face {index} {_face_problem(row, size, corners)}")
        polygons.setdefault(size, []).append([int(corner) for corner in corners])
    if not polygons:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate([fan_triangles(np.asarray(rows_of_size)) for rows_of_size in polygons.values()])


def _face_problem(row: bytes, size: int, corners: list[bytes]) -> str:
    if 3 <= size and len(corners) < size and all(corner.isdigit() for corner in corners):
        return f"lists {len(corners)} of its {size} vertex indices (file cut short?)"
    return f"is malformed (a face is a count n >= 3 and n vertex indices): {row.strip()[:80]!r}"


def _check_binary_stl_size(path: Path) -> None:
    """Refuse a binary STL shorter than its triangle count needs (trimesh would try it as ASCII: "no faces")."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(512)
    if len(head) < 84 or (head.lstrip().startswith(b"solid") and (b"facet" in head or b"endsolid" in head)):
        return
    (count,) = struct.unpack_from("<I", head, 80)
    if 84 + 50 * count > size:
        raise FormatError(
            f"binary STL is truncated: its header declares {count:,} triangles ({84 + 50 * count:,} bytes), "
            f"the file has {size:,} bytes"
        )


def _check_external_files(path: Path, ext: str) -> None:
    """Refuse a glTF whose buffers name anything but a regular file inside the file's own folder: a FIFO would hang
    the reader, a device never end, and `../` or an absolute path would read a file the user did not give."""
    folder = path.resolve().parent
    document = _gltf_document(path, ext)
    buffers = document.get("buffers") if isinstance(document, dict) else None  # trimesh refuses a non-object
    for buffer in buffers or []:
        uri = buffer.get("uri") if isinstance(buffer, dict) else None
        if not isinstance(uri, str) or "base64," in uri:
            continue
        for name in {uri.strip(), unquote(uri).strip()}:
            target = (folder / name).resolve()
            try:
                mode, reason = os.stat(target).st_mode, None
            except OSError as error:
                mode, reason = 0, error.strerror
            check_rules([
                (target.is_relative_to(folder), f"glTF buffer URI {uri!r} points outside the file's folder"),
                (reason is None, f"glTF buffer URI {uri!r} cannot be read ({reason})"),
                (reason is not None or stat.S_ISREG(mode), f"glTF buffer URI {uri!r} is not a regular file"),
            ])  # fmt: skip


def _gltf_document(path: Path, ext: str) -> object:
    """The parsed JSON part of a `.gltf` file, or the JSON chunk of a `.glb` (an object, when trimesh can read it)."""
    with open(path, "rb") as handle:
        if ext == ".glb":
            magic, _, _ = _GLB_HEADER.unpack(handle.read(_GLB_HEADER.size).ljust(_GLB_HEADER.size, b"\0"))
            length, kind = _GLB_CHUNK.unpack(handle.read(_GLB_CHUNK.size).ljust(_GLB_CHUNK.size, b"\0"))
            if magic != b"glTF" or kind != b"JSON" or length > path.stat().st_size:
                raise FormatError("not a GLB file (no 'glTF' magic or no JSON chunk first)")
            text = handle.read(length)
        else:
            text = handle.read()
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise FormatError(f"the glTF JSON is malformed ({error})") from None
    return document
