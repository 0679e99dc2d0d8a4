"""Projection speed and golden parity: time `render_views` for 32 clouds of 1024 points per style, print the largest
difference from the official code's outputs (tests/fixtures/reference_subset.npz) and, for the V1 styles, the
speed ratio against the official projection, timed interleaved with ours.

The official baseline is the file given by `--official` (a copy of PointCLIP's `trainers/mv_utils_zs.py`, never
vendored here: its `points2depth` and `euler2mat` are used with the official `PCViews.get_img` steps), else the
line-by-line re-implementation in `reference_v1_projection.py`. Either is first checked to reproduce the golden maps.

    python benchmarks/bench_projection.py [--batch 32] [--points 1024] [--repeats 15] [--device cpu] [--threads 2]
                                          [--official PATH/TO/mv_utils_zs.py]
"""

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np
import reference_v1_projection  # next to this script
import torch

from pointclip_hf import render_views

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "reference_subset.npz"
GOLDEN = {"pointclip_v1": "v1_zs_depth", "pointclip_v1_fewshot": "v1_fs_depth", "pointclip_v2": "v2_img_110"}


def official_views(path: str | None, style: str, device) -> reference_v1_projection.PCViews:
    """The official V1 projection of `style`: from the file at `path`, else the re-implementation."""
    if path is None:
        return reference_v1_projection.PCViews(style, device)
    spec = importlib.util.spec_from_file_location("official_mv_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return reference_v1_projection.PCViews(style, device, points2depth=module.points2depth, euler2mat=module.euler2mat)


def timed(run, device) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_style(style: str, args, clouds: torch.Tensor) -> dict[str, float]:
    """Median ms of `render_views` for `clouds`, and of the official V1 projection, timed round by round."""
    runs = {"ours": lambda: render_views(clouds, style)}
    if style in reference_v1_projection.VIEWS:
        official = official_views(args.official, style, args.device)
        runs["official"] = lambda: official.get_img(clouds)
    times = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(timed(run, args.device))
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def check_official(style: str, args, points: torch.Tensor, expected: np.ndarray) -> None:
    if style in reference_v1_projection.VIEWS:
        maps = official_views(args.official, style, args.device).get_img(points).cpu().numpy()
        if not np.array_equal(maps.reshape(expected.shape), expected):
            raise SystemExit(f"The official baseline does not reproduce the golden {style} maps.")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--official", help="a copy of the official trainers/mv_utils_zs.py (default: re-implemented)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    golden = np.load(FIXTURES)
    reference_points = torch.from_numpy(golden["points"]).to(args.device)
    generator = torch.Generator().manual_seed(0)
    clouds = torch.rand(args.batch, args.points, 3, generator=generator) * 2 - 1
    clouds = (clouds / clouds.norm(dim=-1).amax(dim=1)[:, None, None]).to(args.device)
    baseline = "official file" if args.official else "re-implementation"
    print(f"{torch.get_num_threads()} threads, official baseline {baseline}, medians of {args.repeats} runs")
    print(f"{'style':22s} {'ms / batch':>10s} {'ms / cloud':>10s} {'max |diff|':>11s} {'within 1e-5':>12s} "
          f"{'official ms':>12s} {'speed-up':>9s}")  # fmt: skip
    for style in GOLDEN:
        ours = render_views(reference_points, style).flatten(0, 1).cpu().numpy()
        expected = golden[GOLDEN[style]].reshape(ours.shape)
        difference = np.abs(ours - expected)
        check_official(style, args, reference_points, expected)
        median = measure_style(style, args, clouds)
        ratio = f"{median['official'] / median['ours']:8.2f}x" if "official" in median else f"{'-':>9s}"
        official_ms = f"{median['official']:12.1f}" if "official" in median else f"{'-':>12s}"
        print(f"{style:22s} {median['ours']:10.1f} {median['ours'] / args.batch:10.2f} {difference.max():11.2e} "
              f"{(difference <= 1e-5).mean():12.6f} {official_ms} {ratio}")  # fmt: skip


if __name__ == "__main__":
    main()
