"""Fuzz every point-cloud reader and count the outcomes: clouds read, and `PointCloudFileError`s by their cause.

Per format, `--count` inputs (default 300): a third random bytes, a third a valid file cut at a random point, a third
a valid file with random bytes overwritten. Every input must end as a finite cloud or a `PointCloudFileError`; the
cause column says what the reader met (`FormatError`: our own check; other names: the library's error, wrapped).
Any other exception type is a failure of the contract and is printed.

    python benchmarks/fuzz_readers.py --count 300
"""

from __future__ import annotations

import argparse
import collections
import io
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointclip_hf.io import SUPPORTED_EXTENSIONS, PointCloudFileError, load_point_cloud  # noqa: E402


def valid_files() -> dict[str, bytes]:
    """A small valid file of every format."""
    import trimesh

    box = trimesh.creation.box()
    xyz = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    npy = io.BytesIO()
    np.save(npy, xyz)
    npz = io.BytesIO()
    np.savez_compressed(npz, points=xyz)
    files = {".npy": npy.getvalue(), ".npz": npz.getvalue()}
    text = "\n".join(" ".join(map(str, row)) for row in xyz.tolist()).encode()
    files.update({ext: text for ext in (".xyz", ".txt", ".pts")})
    files[".csv"] = b"x,y,z\n" + text.replace(b" ", b",")
    files[".pcd"] = (b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 8\nHEIGHT 1\nPOINTS 8\nDATA binary\n"
                     + xyz.tobytes())  # fmt: skip
    for ext in (".ply", ".off", ".obj", ".stl", ".glb"):
        exported = box.export(file_type=ext[1:])
        files[ext] = exported.encode() if isinstance(exported, str) else exported
    gltf = box.export(file_type="gltf", embed_buffers=True)
    files[".gltf"] = gltf["model.gltf"] if isinstance(gltf, dict) else gltf
    files.update(_las_files(xyz))
    return files


def _las_files(xyz: np.ndarray) -> dict[str, bytes]:
    try:
        import laspy
    except ImportError:
        return {".las": b"LASF", ".laz": b"LASF"}
    out = {}
    for ext in (".las", ".laz"):
        data = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
        data.x, data.y, data.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        buffer = io.BytesIO()
        data.write(buffer, do_compress=ext == ".laz")
        out[ext] = buffer.getvalue()
    return out


def mutate(valid: bytes, rng: np.random.Generator, kind: int) -> bytes:
    if kind == 0 or not valid:
        return rng.bytes(int(rng.integers(0, 600)))
    if kind == 1:
        return valid[: int(rng.integers(0, len(valid)))]
    data = bytearray(valid)
    for _ in range(int(rng.integers(1, 8))):
        data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
    return bytes(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    valid = valid_files()
    outcomes: dict[str, collections.Counter] = {}
    contract_broken = 0
    with tempfile.TemporaryDirectory() as folder:
        for ext in SUPPORTED_EXTENSIONS:
            counter = outcomes.setdefault(ext, collections.Counter())
            path = Path(folder) / f"fuzz{ext}"
            for i in range(args.count):
                path.write_bytes(mutate(valid[ext], rng, i % 3))
                try:
                    load_point_cloud(path, num_mesh_samples=16)
                    counter["read"] += 1
                except PointCloudFileError as error:
                    cause = type(error.__cause__).__name__ if error.__cause__ is not None else "FormatError"
                    counter[cause] += 1
                except Exception as error:  # noqa: BLE001 - counted as a broken contract
                    contract_broken += 1
                    print(f"{ext}: {type(error).__name__}: {error}")
    total = collections.Counter()
    for ext, counter in outcomes.items():
        total.update(counter)
        print(f"{ext:6s} " + ", ".join(f"{name} {n}" for name, n in counter.most_common()))
    print(f"total  {sum(total.values())} inputs: " + ", ".join(f"{name} {n}" for name, n in total.most_common()))
    print(f"other exception types: {contract_broken}")


if __name__ == "__main__":
    main()
