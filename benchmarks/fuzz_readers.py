"""Fuzz every point-cloud reader under an address-space limit and count the outcomes: clouds read,
`PointCloudFileError`s by their cause, and any abort, hang or undocumented exception type.

Per format, `--count` inputs (default 300) cycle through four mutations of a valid file: random bytes, the file cut at
a random point, random bytes overwritten, and random 32-bit words overwritten with huge values (declared sizes: counts,
offsets, LAZ layer sizes). Hand-made hostile files (the cases of issue 17) come first. Every input must end as a finite
cloud or a `PointCloudFileError`; the cause column says what the reader met (`FormatError`: our own check; other names:
the library's error, wrapped).

The inputs run in a child process limited to `--address-space-mb` of address space (default 2,500, as
`ulimit -v 2500000`), so that an allocation a file declares fails the way it fails for a user's process: a reader
that lets a library abort the process (lazrs does, with SIGABRT) shows up as ABORT; an input that takes more than
`--timeout` seconds as HANG. The child is restarted after either.

    python benchmarks/fuzz_readers.py --count 300
"""

import argparse
import collections
import io
import json
import os
import resource
import select
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointclip_hf.io import SUPPORTED_EXTENSIONS, PointCloudFileError, load_point_cloud  # noqa: E402


def valid_files() -> dict[str, list[bytes]]:
    """Small valid files of every format (two LAZ layouts: point-wise chunks and LAS 1.4 layered chunks)."""
    import trimesh

    box = trimesh.creation.box()
    xyz = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    npy = io.BytesIO()
    np.save(npy, xyz)
    npz = io.BytesIO()
    np.savez_compressed(npz, points=xyz)
    files = {".npy": [npy.getvalue()], ".npz": [npz.getvalue()]}
    text = "\n".join(" ".join(map(str, row)) for row in xyz.tolist()).encode()
    files.update({ext: [text] for ext in (".xyz", ".txt", ".pts")})
    files[".csv"] = [b"x,y,z\n" + text.replace(b" ", b",")]
    files[".pcd"] = [b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 8\nHEIGHT 1\nPOINTS 8\nDATA binary\n"
                     + xyz.tobytes()]  # fmt: skip
    for ext in (".ply", ".off", ".obj", ".stl", ".glb"):
        exported = box.export(file_type=ext[1:])
        files[ext] = [exported.encode() if isinstance(exported, str) else exported]
    gltf = box.export(file_type="gltf", embed_buffers=True)
    files[".gltf"] = [gltf["model.gltf"] if isinstance(gltf, dict) else gltf]
    files[".las"] = [las_bytes(xyz, 3, "1.2", compress=False)]
    files[".laz"] = [las_bytes(xyz, 3, "1.2", compress=True), las_bytes(xyz, 6, "1.4", compress=True)]
    return files


def las_bytes(xyz: np.ndarray, point_format: int, version: str, compress: bool) -> bytes:
    import laspy

    data = laspy.LasData(laspy.LasHeader(point_format=point_format, version=version))
    data.x, data.y, data.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    buffer = io.BytesIO()
    data.write(buffer, do_compress=compress)
    return buffer.getvalue()


def hostile_files(valid: dict[str, list[bytes]]) -> list[tuple[str, bytes]]:
    """The hand-made cases: what each declares is far more than the file holds, or it names something to hang on."""
    layered = bytearray(valid[".laz"][1])
    first_layer = struct.unpack_from("<I", layered, 96)[0] + 8 + 30 + 4  # chunk table offset, first point, count
    struct.pack_into("<I", layered, first_layer, 0x7FFFFFFF)
    chunks = bytearray(valid[".laz"][0])
    table = struct.unpack_from("<q", chunks, struct.unpack_from("<I", chunks, 96)[0])[0]
    struct.pack_into("<I", chunks, table + 4, 0xFFFFFFF0)
    junk = b"ply\nformat binary_little_endian 1.0\nelement junk 134000000\nelement vertex 1\nproperty float x\n" \
           b"property float y\nproperty float z\nend_header\n" + bytes(12)  # fmt: skip
    gltf = json.loads(valid[".gltf"][0])
    fifo, outside = (json.dumps({**gltf, "buffers": [{**gltf["buffers"][0], "uri": uri}]}).encode()
                     for uri in ("fifo", "../outside.bin"))  # fmt: skip
    stl = valid[".stl"][0]
    off = valid[".off"][0].rstrip()
    return [(".laz", bytes(layered)), (".laz", bytes(chunks)), (".ply", junk), (".gltf", fifo),
            (".gltf", outside), (".stl", stl[: len(stl) - 30]), (".off", off[: off.rfind(b" ")])]  # fmt: skip


def mutate(valid: bytes, rng: np.random.Generator, kind: int) -> bytes:
    if kind == 0 or not valid:
        return rng.bytes(int(rng.integers(0, 600)))
    if kind == 1:
        return valid[: int(rng.integers(0, len(valid)))]
    data = bytearray(valid)
    for _ in range(int(rng.integers(1, 8))):
        if kind == 2:
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        elif len(data) >= 4:
            word = int(rng.choice([0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, 0x10000000, 0x80000000]))
            struct.pack_into("<I", data, int(rng.integers(0, len(data) - 3)), word)
    return bytes(data)


def inputs(count: int, seed: int) -> list[tuple[str, bytes]]:
    valid = valid_files()
    cases = hostile_files(valid)
    for ext_index, ext in enumerate(SUPPORTED_EXTENSIONS):
        rng = np.random.default_rng([seed, ext_index])
        cases += [(ext, mutate(valid[ext][i % len(valid[ext])], rng, i % 4)) for i in range(count)]
    return cases


def run_child(count: int, seed: int, start: int, address_space_mb: int) -> None:
    """Read inputs `start...` and print one JSON line `[index, ext, outcome]` for each."""
    limit = address_space_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with tempfile.TemporaryDirectory() as folder:
        os.mkfifo(Path(folder) / "fifo")
        for index, (ext, data) in enumerate(inputs(count, seed)):
            if index < start:
                continue
            path = Path(folder) / f"fuzz{ext}"
            path.write_bytes(data)
            try:
                points = load_point_cloud(path, num_mesh_samples=16)
                outcome = "read" if np.isfinite(points[:, :3]).all() else "NON-FINITE RESULT"
            except PointCloudFileError as error:
                cause = type(error.__cause__).__name__ if error.__cause__ is not None else "FormatError"
                outcome = cause + (" (MULTI-LINE)" if "\n" in str(error).strip() else "")
            except Exception as error:  # noqa: BLE001 - what the fuzzing is there to find
                outcome = f"UNDOCUMENTED {type(error).__name__}: {str(error)[:100]}"
            print(json.dumps([index, ext, outcome]), flush=True)


def run_all(args) -> tuple[dict[str, collections.Counter], list[str]]:
    exts = [ext for ext, _ in inputs(args.count, args.seed)]
    outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    problems, start = [], 0
    while start < len(exts):
        command = [sys.executable, __file__, "--child", str(start), "--count", str(args.count), "--seed",
                   str(args.seed), "--address-space-mb", str(args.address_space_mb)]  # fmt: skip
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        start = _collect(child, start, exts, args.timeout, outcomes, problems)
    return outcomes, problems


def _collect(child, start: int, exts: list[str], timeout: float, outcomes, problems) -> int:
    """Count the child's outcomes until it ends or stalls; an input it stops at is an abort or a hang. Returns the
    index to go on from."""
    index = start
    while True:
        if not select.select([child.stdout], [], [], timeout)[0]:
            child.kill()
            child.wait()
            outcomes[exts[index]]["HANG"] += 1
            problems.append(f"input {index} ({exts[index]}): no answer in {timeout:g} s")
            return index + 1
        line = child.stdout.readline()
        if not line:
            break
        index, ext, outcome = json.loads(line)
        outcomes[ext][outcome.split(":")[0]] += 1
        if outcome.startswith(("UNDOCUMENTED", "NON-FINITE")) or "MULTI-LINE" in outcome:
            problems.append(f"input {index} ({ext}): {outcome}")
        index += 1
    if child.wait() == 0:
        return index
    outcomes[exts[index]][f"ABORT (exit {child.returncode})"] += 1
    problems.append(f"input {index} ({exts[index]}): the process ended with exit status {child.returncode}")
    return index + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="inputs per format (default: 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--address-space-mb", type=int, default=2500)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds an input may take (default: 30)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        run_child(args.count, args.seed, args.child, args.address_space_mb)
        return
    outcomes, problems = run_all(args)
    total = collections.Counter()
    for ext in SUPPORTED_EXTENSIONS:
        total.update(outcomes[ext])
        print(f"{ext:6s} " + ", ".join(f"{name} {n}" for name, n in outcomes[ext].most_common()))
    print(f"total  {sum(total.values())} inputs: " + ", ".join(f"{name} {n}" for name, n in total.most_common()))
    aborts = sum(n for name, n in total.items() if name.startswith("ABORT"))
    undocumented = sum(n for name, n in total.items() if name.startswith(("UNDOCUMENTED", "NON-FINITE")))
    print(f"aborts {aborts}, hangs {total['HANG']}, undocumented types {undocumented}, "
          f"address space {args.address_space_mb} MB")  # fmt: skip
    for problem in problems:
        print("  " + problem)


if __name__ == "__main__":
    main()
