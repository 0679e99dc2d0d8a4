"""Memory and time of projecting one large cloud: for each style, `render_views` (part segmentation:
`render_part_views`) of one cloud of `--points` points (default 1,000,000), each style and thread count in a fresh
process. It prints the resident memory the call adds above the process (peak RSS during the call minus RSS before it,
the cloud already built and the code warmed up on a small cloud) and the call's seconds, with the CPU, thread count,
dtype (float32) and load average.

    python benchmarks/bench_memory.py [--points 1000000] [--threads 1 2] [--styles pointclip_v1 ...]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine import header, load_average, reset_peak_resident, resident_mib, write_results

from pointclip_hf import render_part_views, render_views
from pointclip_hf.model.cpu_threads import map_on_cpu_threads

STYLES = ("pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2", "pointclip_v2_part_segmentation")


def project(style: str, cloud: torch.Tensor) -> None:
    if style == "pointclip_v2_part_segmentation":
        render_part_views(cloud)
    else:
        render_views(cloud, style)


def measure_here(style: str, points: int, threads: int) -> dict:
    """One projection of a `points`-point cloud in this process: added peak MiB and seconds."""
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    cloud = torch.randn(1, points, 3, generator=generator)
    cloud /= cloud.norm(dim=-1).max()
    with torch.inference_mode():
        map_on_cpu_threads(lambda item: item, [0])
        project(style, cloud[:, :2048])
        before = resident_mib()
        if not reset_peak_resident():
            raise SystemExit("bench_memory.py needs Linux's /proc/self/clear_refs to read a call's peak memory.")
        start = time.perf_counter()
        project(style, cloud)
        seconds = time.perf_counter() - start
    return {"style": style, "points": points, "threads": threads, "extra_mib": resident_mib("VmHWM") - before,
            "seconds": seconds, "rss_before_mib": before}  # fmt: skip


def measure_in_child(style: str, points: int, threads: int) -> dict:
    command = [sys.executable, __file__, "--child", style, "--points", str(points), "--threads", str(threads)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, torch.get_num_threads()])
    parser.add_argument("--styles", nargs="+", choices=STYLES, default=list(STYLES))
    parser.add_argument("--child", choices=STYLES, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory.json"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_here(args.child, args.points, args.threads[0])))
        return 0
    print(f"{header()}; one cloud of {args.points:,} points, each row a fresh process", flush=True)
    print("| style | threads | extra MiB (peak - before) | seconds | load |\n|---|---|---|---|---|", flush=True)
    rows = []
    for style in args.styles:
        for threads in sorted(set(args.threads)):
            row = measure_in_child(style, args.points, threads)
            row["load_after"] = load_average()
            rows.append(row)
            print(f"| {style} | {threads} | {row['extra_mib']:.0f} | {row['seconds']:.2f} | {row['load_after']} |",
                  flush=True)  # fmt: skip
    write_results(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
