"""Triangle meshes read with `trimesh` (`.off`, `.obj`, `.stl`, `.glb`, `.gltf`) and sampled by area to points."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import FormatError

MESH_EXTENSIONS = (".off", ".obj", ".stl", ".glb", ".gltf")


def load_mesh(path: Path, ext: str, num_samples: int, seed: int) -> np.ndarray:
    """`num_samples` points sampled uniformly over the surface of the mesh (or the flattened scene) in `path`."""
    import trimesh  # hard dependency; imported lazily to keep package import fast

    if ext == ".off":
        _check_off_complete(path.read_bytes())
    options = {"skip_materials": True} if ext in (".obj", ".glb", ".gltf") else {}
    try:
        scene = trimesh.load_scene(str(path), file_type=ext[1:], process=False, **options)
        mesh = scene.to_mesh()
    except Exception as error:  # trimesh raises many types (NameError, IndexError, KeyError, ...)
        raise FormatError(f"could not parse the {ext[1:].upper()} mesh ({type(error).__name__}: {error})") from None
    return sample_surface(np.asarray(mesh.vertices), np.asarray(mesh.faces), num_samples, seed)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, num_samples: int, seed: int) -> np.ndarray:
    """`num_samples` points drawn uniformly by area over the triangles `faces` of `vertices`, reproducible by `seed`.

    Args:
        vertices (`np.ndarray` of shape `(V, 3)`): vertex coordinates.
        faces (`np.ndarray` of shape `(F, 3)`): vertex indices of each triangle.
        num_samples (`int`): how many points to draw.
        seed (`int`): seed of the draw.

    Returns:
        `np.ndarray` of shape `(num_samples, 3)`, float64.
    """
    import trimesh

    if len(faces) == 0:
        raise FormatError("mesh has no faces to sample points from")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise FormatError(f"a mesh face refers to a vertex outside 0..{len(vertices) - 1}")
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise FormatError(f"mesh has {int(bad.sum())} vertices with NaN or infinite coordinates (first: {first})")
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)
    area = float(mesh.area)
    if not np.isfinite(area) or area <= 0.0:
        raise FormatError(f"mesh has zero or invalid surface area ({area})")
    samples, _ = trimesh.sample.sample_surface(mesh, num_samples, seed=seed)
    return np.asarray(samples, dtype=np.float64)


def _check_off_complete(data: bytes) -> None:
    """Refuse an OFF file with fewer vertex and face rows than its header declares (trimesh accepts it)."""
    lines = [line.split(b"#")[0].split() for line in data.splitlines()]
    lines = [tokens for tokens in lines if tokens]
    if not lines or not lines[0][0].upper().endswith(b"OFF"):
        raise FormatError("not an OFF file (missing the 'OFF' first line)")
    counts_line = 0 if len(lines[0]) > 1 else 1
    counts = lines[0][1:] if counts_line == 0 else (lines[1] if len(lines) > 1 else [])
    try:
        num_vertices, num_faces = int(counts[0]), int(counts[1])
    except (IndexError, ValueError):
        raise FormatError("OFF header lacks the vertex and face counts") from None
    if num_vertices < 0 or num_faces < 0:
        raise FormatError(f"OFF header declares negative counts ({num_vertices} vertices, {num_faces} faces)")
    rows = len(lines) - counts_line - 1
    if rows < num_vertices + num_faces:
        raise FormatError(
            f"OFF file is truncated: the header declares {num_vertices} vertices and {num_faces} faces, "
            f"{rows} rows follow"
        )
