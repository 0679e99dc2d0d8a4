"""Regenerate the example point clouds (shipped in `pointclip_hf/example_clouds/`, linked from `examples/`) from
pybullet's data files.

Usage::

    pip install --target /tmp/pyb pybullet      # only to get the data files
    python examples/make_example_clouds.py /tmp/pyb/pybullet_data

Each object is assembled from the ``<visual>`` meshes of a URDF in
``pybullet_data`` (mesh file, scale and origin exactly as pybullet would place
them in its z-up world), rotated upright into the y-up convention of ModelNet
(``(x, y, z) -> (x, z, -y)`` for z-up objects; see ``OBJECTS``), sampled uniformly by surface area with trimesh
(``num_points`` points, fixed seed), centred on the mean of the samples,
scaled so the farthest point lies on the unit sphere, and saved as float32
``[num_points, 3]`` ``.npy``.

Only numpy and trimesh are needed; pybullet itself is never imported.
"""

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import trimesh

PACKAGE_CLOUDS = Path(__file__).resolve().parents[1] / "pointclip_hf" / "example_clouds"

# pybullet / URDF worlds are z-up; ModelNet (and PointCLIP's views) are y-up.
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])

# output name -> (URDF relative to pybullet_data whose visual meshes make the
# object, rotation applied to the assembled mesh to make the object upright, y-up)
OBJECTS = {
    # a box mesh placed five times (top + 4 legs) by the URDF, z-up
    "table": ("table/table.urdf", Z_UP_TO_Y_UP),
    # z-up like the URDF world
    "mug": ("objects/mug.urdf", Z_UP_TO_Y_UP),
    # the OBJ was exported from Blender with y-up, so the bear lies on its back
    # in pybullet's z-up world; its own frame is already upright (y-up)
    "teddy_bear": ("teddy_large.urdf", np.eye(4)),
}


def _floats(text: str | None, default: str) -> list[float]:
    return [float(v) for v in (text or default).split()]


def load_urdf_visuals(urdf_path: Path) -> trimesh.Trimesh:
    """Concatenate the mesh ``<visual>`` elements of a single-link URDF.

    Handles ``<origin xyz rpy>`` and ``<mesh filename scale>``; URDF rpy is
    fixed-axis roll (x), pitch (y), yaw (z), i.e. ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``.
    """
    root = ET.parse(urdf_path).getroot()
    links = root.findall("link")
    if len(links) != 1:
        raise ValueError(f"{urdf_path}: expected a single-link URDF, found {len(links)} links")
    parts = []
    for visual in links[0].findall("visual"):
        mesh_el = visual.find("geometry/mesh")
        if mesh_el is None:
            raise ValueError(f"{urdf_path}: only <mesh> visual geometry is supported")
        mesh = trimesh.load(urdf_path.parent / mesh_el.get("filename"), force="mesh", skip_materials=True)
        scale = _floats(mesh_el.get("scale"), "1 1 1")
        origin = visual.find("origin")
        xyz = _floats(origin.get("xyz") if origin is not None else None, "0 0 0")
        rpy = _floats(origin.get("rpy") if origin is not None else None, "0 0 0")
        transform = trimesh.transformations.euler_matrix(*rpy, axes="sxyz")
        transform[:3, 3] = xyz
        mesh.apply_scale(scale)
        mesh.apply_transform(transform)
        parts.append(mesh)
    if not parts:
        raise ValueError(f"{urdf_path}: no <visual> meshes")
    return trimesh.util.concatenate(parts)


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    points = points - points.mean(axis=0)
    return points / np.linalg.norm(points, axis=1).max()


def make_cloud(pybullet_data: Path, urdf: str, to_y_up: np.ndarray, num_points: int, seed: int) -> np.ndarray:
    mesh = load_urdf_visuals(pybullet_data / urdf)
    mesh.apply_transform(to_y_up)
    points, _ = trimesh.sample.sample_surface(mesh, num_points, seed=seed)
    return normalize_unit_sphere(np.asarray(points, dtype=np.float64)).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pybullet_data", type=Path, help="path to the pybullet_data folder")
    parser.add_argument(
        "--out",
        type=Path,
        default=PACKAGE_CLOUDS,
        help="output folder (default: the package's example_clouds/, linked from examples/)",
    )
    parser.add_argument("--num-points", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    for name, (urdf, to_y_up) in OBJECTS.items():
        cloud = make_cloud(args.pybullet_data, urdf, to_y_up, args.num_points, args.seed)
        target = args.out / f"{name}.npy"
        np.save(target, cloud)
        print(f"{target}: {cloud.shape} {cloud.dtype} from {urdf}")


if __name__ == "__main__":
    main()
