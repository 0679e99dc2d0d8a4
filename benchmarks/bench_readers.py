"""Each point-cloud reader against the fastest library call for its format, on 1M points (meshes: 327,680 faces).

    python benchmarks/bench_readers.py                      # every format, 1M points, 5 pairs each
    python benchmarks/bench_readers.py --points 200000 --formats ply-binary las

For every format the script writes one file, then times `load_point_cloud` (ours) and each library call that reads
that format, interleaved (ours, library, ours, library, ... so that the load of a shared machine hits both alike),
and prints the medians and the ratio to the fastest library call. Each call does the same job as ours: an `[N, C]`
array of the file's per-point values (a memory-mapped result is read into one), or, for meshes, the mesh loaded and
2,048 points sampled over its surface; ours also checks the file (declared sizes, finite coordinates). Point formats
carry x, y, z and one float scalar; the mesh is an icosphere of 327,680 faces.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointclip_hf.io import load_point_cloud  # noqa: E402

Reader = Callable[[Path], object]


def cloud(num_points: int) -> np.ndarray:
    """`[N, 4]` float32: a unit sphere's surface plus a scalar column."""
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(num_points, 3))
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    return np.concatenate([xyz, rng.uniform(size=(num_points, 1))], axis=1).astype(np.float32)


def _plyfile(path: Path):
    from plyfile import PlyData

    vertex = PlyData.read(str(path))["vertex"].data  # memory-mapped when binary: the columns read the file
    return np.column_stack([vertex[name] for name in vertex.dtype.names])


def _trimesh_points(path: Path):
    import trimesh

    return np.asarray(trimesh.load(str(path), process=False).vertices)


def _trimesh_samples(path: Path):
    import trimesh

    mesh = trimesh.load(str(path), force="mesh", process=False)
    return trimesh.sample.sample_surface(mesh, 2048, seed=0)[0]


def _np_loadtxt(path: Path, delimiter: str, skip: int = 0):
    return np.loadtxt(path, delimiter=delimiter.strip() or None, skiprows=skip, dtype=np.float64)


def _pandas(path: Path, sep: str, skip: int = 0, rows: int | None = None):
    import pandas

    return pandas.read_csv(path, sep=sep, header=None, skiprows=skip, nrows=rows, engine="c").to_numpy(np.float64)


def _pyarrow(path: Path, delimiter: str, skip: int = 0):
    from pyarrow import csv

    options = csv.ReadOptions(autogenerate_column_names=True, skip_rows=skip)
    table = csv.read_csv(path, read_options=options, parse_options=csv.ParseOptions(delimiter=delimiter))
    return np.stack([column.to_numpy() for column in table.columns], axis=1)


def _laspy(path: Path):
    import laspy

    data = laspy.read(str(path))
    return np.stack([data.x, data.y, data.z], axis=1)


def _pcd_binary(path: Path):
    data = path.read_bytes()
    start = data.index(b"DATA binary\n") + len(b"DATA binary\n")
    return np.frombuffer(data, dtype="<f4", offset=start).reshape(-1, 4).astype(np.float64)


def _pcd_compressed(path: Path):
    import lzf

    data = path.read_bytes()
    start = data.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n")
    stored, expanded = np.frombuffer(data, dtype="<u4", count=2, offset=start)
    raw = lzf.decompress(data[start + 8 : start + 8 + int(stored)], int(expanded))
    return np.frombuffer(raw, dtype="<f4").reshape(4, -1).T.astype(np.float64)


def write_files(folder: Path, num_points: int) -> dict[str, tuple[Path, dict[str, Reader]]]:
    """Write one file per format; return `{format: (path, {library call name: reader})}`."""
    import laspy
    import trimesh
    from plyfile import PlyData, PlyElement

    points = cloud(num_points)
    files: dict[str, tuple[Path, dict[str, Reader]]] = {}

    def add(name: str, file_name: str, readers: dict[str, Reader]) -> Path:
        files[name] = (folder / file_name, readers)
        return folder / file_name

    np.save(add("npy", "c.npy", {"numpy.load": np.load}), points)
    np.savez(add("npz", "c.npz", {"numpy.load": lambda p: np.load(p)["points"]}), points=points)
    text = "\n".join(f"{x:.6f} {y:.6f} {z:.6f} {s:.6f}" for x, y, z, s in points.tolist()) + "\n"
    for name, separator, header in (("xyz", " ", ""), ("csv", ",", "x,y,z,s\n")):
        skip = 1 if header else 0
        readers = {"numpy.loadtxt": lambda p, s=separator, k=skip: _np_loadtxt(p, s, k),
                   "pandas": lambda p, s=separator, k=skip: _pandas(p, s, k),
                   "pyarrow": lambda p, s=separator, k=skip: _pyarrow(p, s, k)}  # fmt: skip
        add(name, f"c.{name}", readers).write_text(header + text.replace(" ", separator))

    vertex = np.empty(num_points, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("scalar", "f4")])
    for i, name in enumerate(vertex.dtype.names):
        vertex[name] = points[:, i]
    element = PlyElement.describe(vertex, "vertex")
    point_readers = {"plyfile": _plyfile, "trimesh": _trimesh_points}
    PlyData([element], text=True).write(str(add("ply-ascii", "a.ply", point_readers)))
    PlyData([element]).write(str(add("ply-binary", "b.ply", point_readers)))

    sphere = trimesh.creation.icosphere(subdivisions=7)
    for name, ext in (("ply-mesh", "ply"), ("off", "off"), ("obj", "obj"), ("stl", "stl"), ("glb", "glb")):
        exported = sphere.export(file_type=ext)
        add(name, f"m.{ext}", {"trimesh": _trimesh_samples}).write_bytes(
            exported.encode() if isinstance(exported, str) else exported
        )

    header = "FIELDS x y z s\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\nWIDTH {n}\nHEIGHT 1\nPOINTS {n}\nDATA {mode}\n"
    pcd_text = header.format(n=num_points, mode="ascii") + text
    add("pcd-ascii", "a.pcd", {"pandas": lambda p: _pandas(p, " ", 8, num_points)}).write_text(pcd_text)
    add("pcd-binary", "b.pcd", {"numpy.frombuffer": _pcd_binary}).write_bytes(
        header.format(n=num_points, mode="binary").encode() + points.astype("<f4").tobytes()
    )
    compressed = _lzf_compress(np.ascontiguousarray(points.T).astype("<f4").tobytes())
    add("pcd-binary_compressed", "c.pcd", {"lzf+numpy": _pcd_compressed}).write_bytes(
        header.format(n=num_points, mode="binary_compressed").encode() + compressed
    )

    for ext in ("las", "laz"):
        data = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
        data.header.scales = [1e-6, 1e-6, 1e-6]
        data.x, data.y, data.z = points[:, 0], points[:, 1], points[:, 2]
        data.intensity = (points[:, 3] * 60000).astype(np.uint16)
        data.write(str(add(ext, f"c.{ext}", {"laspy.read": _laspy})))
    return files


def _lzf_compress(raw: bytes) -> bytes:
    import lzf

    compressed = lzf.compress(raw, len(raw) + len(raw) // 16 + 64)  # random floats barely compress
    return np.array([len(compressed), len(raw)], dtype="<u4").tobytes() + compressed


def interleaved_medians(ours: Reader, libraries: dict[str, Reader], path: Path, repeats: int) -> dict[str, float]:
    """Median seconds of each reader, the calls interleaved round by round after one warm-up round."""
    readers = {"ours": ours, **libraries}
    times: dict[str, list[float]] = {name: [] for name in readers}
    for round_index in range(repeats + 1):
        for name, reader in readers.items():
            start = time.perf_counter()
            reader(path)
            if round_index:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def machine_line() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"CPU {model}; {os.cpu_count()} threads; load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5, help="timed pairs per format (default: 5)")
    parser.add_argument("--formats", nargs="*", help="formats to run (default: all)")
    args = parser.parse_args()
    print(machine_line())
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        files = write_files(Path(folder), args.points)
        for name, (path, libraries) in files.items():
            if args.formats and name not in args.formats:
                continue
            medians = interleaved_medians(lambda p: load_point_cloud(p), libraries, path, args.repeats)
            best = min((n for n in libraries), key=medians.get)
            ratio = medians["ours"] / medians[best]
            rows.append((name, path.stat().st_size, medians["ours"], best, medians[best], ratio, medians))
            print(f"{name:22s} ours {1000 * medians['ours']:8.1f} ms   {best:20s} {1000 * medians[best]:8.1f} ms   "
                  f"x{ratio:.2f}", flush=True)  # fmt: skip
    print(f"\n{machine_line()}\n")
    print("| format | file | ours | fastest library call | library | ours / library |")
    print("| --- | ---: | ---: | --- | ---: | ---: |")
    for name, size, ours, best, library, ratio, medians in rows:
        others = ", ".join(f"{n} {1000 * t:.0f} ms" for n, t in medians.items() if n not in ("ours", best))
        label = best + (f" (also: {others})" if others else "")
        print(f"| {name} | {size / 2**20:.1f} MiB | {1000 * ours:.0f} ms | {label} | {1000 * library:.0f} ms | "
              f"{ratio:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
