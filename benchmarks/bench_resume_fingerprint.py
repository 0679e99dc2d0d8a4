"""Cost of keying a resumable run's files by their content (issue 17, N14): the xxHash3-128 of a file's bytes that
`files_fingerprint` computes, against reading the same file as a point cloud, with SHA-256 and BLAKE2b for scale.

A file of `--points` float32 points per `--formats` entry (`.npy`; `.ply`, binary, is slow to read) is written to a
temporary folder (page cache warm); each round times every method once, in turn (interleaved, so machine load hits
them alike); medians over `--rounds`.

    python benchmarks/bench_resume_fingerprint.py [--points 1000000] [--rounds 9] [--formats npy ply]
"""

import argparse
import hashlib
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

from pointclip_hf.evaluation.fingerprint import file_content_hash
from pointclip_hf.io import load_point_cloud


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hash_with(name: str):
    def digest(path: Path) -> str:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, name).hexdigest()

    return digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--formats", nargs="+", choices=["npy", "ply"], default=["npy"])
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}; torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} before")
    points = np.random.default_rng(0).standard_normal((args.points, 3)).astype(np.float32)
    methods = {
        "load_point_cloud": load_point_cloud,
        "xxh3_128 (files_fingerprint)": file_content_hash,
        "blake2b": hash_with("blake2b"),
        "sha256": hash_with("sha256"),
    }
    with tempfile.TemporaryDirectory() as folder:
        writers = {"npy": np.save, "ply": lambda path, values: trimesh.PointCloud(values).export(path)}
        for suffix in args.formats:
            path = Path(folder) / f"cloud.{suffix}"
            writers[suffix](path, points)
            times = {name: [] for name in methods}
            for _ in range(args.rounds):
                for name, method in methods.items():
                    started = time.perf_counter()
                    method(path)
                    times[name].append(time.perf_counter() - started)
            medians = {name: statistics.median(values) for name, values in times.items()}
            read = medians["load_point_cloud"]
            print(f"{path.suffix} of {args.points:,} points, {path.stat().st_size / 2**20:.1f} MiB "
                  f"(median of {args.rounds} interleaved rounds):")  # fmt: skip
            for name, median in medians.items():
                print(f"  {name:30s} {median * 1e3:9.2f} ms  {median / read:8.1%} of reading it")
    print(f"load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
