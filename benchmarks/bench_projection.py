"""Projection speed against the official code, and golden parity.

For each style, our projection and the official one (`--official`, see `official_projection.py`; never vendored here)
render the same clouds, timed interleaved round by round (`--pairs` rounds, each running ours and the official code at
every thread count of `--threads`, the order reversed every other round), and the table gives medians, the median of
the per-round ratios official / ours, and ours at N threads against ours at 1 thread. Every row records the CPU, thread
count, dtype (float32) and the load average before and after it.

- `pointclip_v1`, `pointclip_v1_fewshot`, `pointclip_v2`: `render_views(clouds, style)` (native resolution) against the
  official `get_img`; `--batch` clouds of `--points` points.
- `pointclip_v2_part_segmentation`: `render_part_views(clouds)` (images cropped and resized to 224, each point's pixel
  and visibility) against the official `Extractor.mv_proj` (the same, from the 224 x 224 x 112 grid);
  `--segmentation-batch` clouds of 2,048 points.

Before timing, the official code must reproduce the golden fixtures bit for bit (they were made from it), and our
largest difference from them is printed.

    python benchmarks/bench_projection.py --official /tmp/official [--threads 1 2] [--pairs 7] [--batch 32]
"""

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from machine import header, interleaved, load_average, median_ratio, write_results
from official_projection import official_projections

from pointclip_hf import render_part_views, render_views
from pointclip_hf.model.cpu_threads import map_on_cpu_threads

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
GOLDEN = {"pointclip_v1": "v1_zs_depth", "pointclip_v1_fewshot": "v1_fs_depth", "pointclip_v2": "v2_img_110"}
PART_SEGMENTATION = "pointclip_v2_part_segmentation"
STYLES = (*GOLDEN, PART_SEGMENTATION)
TABLE_HEADER = (
    "| style | clouds x points | threads | ours ms | official ms | official / ours | ours 1 thread / ours | load |\n"
    "|---|---|---|---|---|---|---|---|"
)


def ours(style: str):
    if style == PART_SEGMENTATION:
        return render_part_views
    return lambda points: render_views(points, style)


def golden_differences(official: dict, styles) -> dict[str, float]:
    """Our largest |difference| from the golden output of each style; exits unless the official code reproduces it."""
    differences = {}
    with np.load(FIXTURES / "reference_subset.npz") as golden:
        points = torch.from_numpy(golden["points"])
        for style in (style for style in styles if style in GOLDEN):
            expected = golden[GOLDEN[style]].reshape(-1, *golden[GOLDEN[style]].shape[-2:])
            if not np.array_equal(official[style](points)[:, 0 if style == "pointclip_v2" else ...].numpy(), expected):
                raise SystemExit(f"The official {style} code does not reproduce the golden fixture.")
            differences[style] = float(np.abs(ours(style)(points).flatten(0, 1).numpy() - expected).max())
    if PART_SEGMENTATION in styles:
        with np.load(FIXTURES / "v2_part_segmentation.npz") as golden:
            points = torch.from_numpy(golden["points"])
            images, _, pixels = official[PART_SEGMENTATION](points)
            if not np.array_equal(images[:10, 0].numpy(), golden["clip_input_cloud0"]) or not np.array_equal(
                pixels.numpy(), golden["point_loc_clip"]
            ):
                raise SystemExit("The official part-segmentation code does not reproduce the golden fixture.")
            got = render_part_views(points[:1], transposed_lookup=True).images[0].numpy()
            differences[PART_SEGMENTATION] = float(np.abs(got - golden["clip_input_cloud0"]).max())
    return differences


def unit_clouds(batch: int, num_points: int) -> torch.Tensor:
    clouds = torch.randn(batch, num_points, 3, generator=torch.Generator().manual_seed(0))
    return clouds / clouds.norm(dim=-1).amax(dim=1)[:, None, None]


def measure(style: str, clouds: torch.Tensor, official, args) -> list[dict]:
    """One row per thread count: medians of ours and the official code, timed interleaved over all thread counts."""
    runs = {}
    for threads in args.threads:
        runs[f"ours@{threads}"] = lambda: ours(style)(clouds)
        runs[f"official@{threads}"] = lambda: official(clouds)

    def use_threads(name: str) -> None:
        torch.set_num_threads(int(name.split("@")[1]))
        map_on_cpu_threads(lambda item: item, [0])  # (re)start the workers outside the timed call

    load_before = load_average()
    times = interleaved(runs, args.pairs, use_threads)
    load_after = load_average()
    rows = []
    for threads in args.threads:
        mine, theirs = times[f"ours@{threads}"], times[f"official@{threads}"]
        rows.append({
            "style": style, "threads": threads, "clouds": len(clouds), "points": clouds.shape[1], "dtype": "float32",
            "pairs": args.pairs, "ours_ms": 1000 * statistics.median(mine),
            "official_ms": 1000 * statistics.median(theirs), "speedup": median_ratio(theirs, mine),
            "ours_vs_ours_1_thread": median_ratio(times[f"ours@{args.threads[0]}"], mine),
            "load_before": load_before, "load_after": load_after,
        })  # fmt: skip
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", required=True, help="folder holding the PointCLIP and PointCLIP_V2 clones")
    parser.add_argument("--styles", nargs="+", choices=STYLES, default=list(STYLES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, torch.get_num_threads()])
    parser.add_argument("--pairs", type=int, default=7, help="interleaved rounds (at least 7)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--segmentation-batch", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "projection.json"))
    args = parser.parse_args(argv)
    if args.pairs < 7:
        parser.error("--pairs must be at least 7")
    args.threads = sorted(set(args.threads))
    official = official_projections(args.official)
    torch.set_grad_enabled(False)  # the official V2 convolutions carry trainable weights
    print(f"{header()}; threads {args.threads}; medians of {args.pairs} interleaved pairs", flush=True)
    differences = golden_differences(official, args.styles)
    print("golden max |ours - official|: " + ", ".join(f"{k} {v:.1e}" for k, v in differences.items()), flush=True)
    print(TABLE_HEADER, flush=True)
    rows = []
    for style in args.styles:
        clouds = unit_clouds(args.batch, args.points)
        if style == PART_SEGMENTATION:
            clouds = unit_clouds(args.segmentation_batch, 2048)
        rows += measure(style, clouds, official[style], args)
        print_rows(rows[-len(args.threads) :])
    write_results(args.out, rows, golden_max_difference=differences)
    return 0


def print_rows(rows: list[dict]) -> None:
    for row in rows:
        print(f"| {row['style']} | {row['clouds']} x {row['points']} | {row['threads']} | {row['ours_ms']:.1f} | "
              f"{row['official_ms']:.1f} | {row['speedup']:.2f}x | {row['ours_vs_ours_1_thread']:.2f}x | "
              f"{row['load_before']}-{row['load_after']} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
