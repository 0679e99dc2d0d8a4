"""Projection speed and golden parity: time `render_views` for 32 clouds of 1024 points per style, and print the
largest difference from the official code's outputs (tests/fixtures/reference_subset.npz).

    python benchmarks/bench_projection.py [--batch 32] [--points 1024] [--repeats 9] [--device cpu]
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pointclip_hf import render_views

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "reference_subset.npz"
GOLDEN = {"pointclip_v1": "v1_zs_depth", "pointclip_v1_fewshot": "v1_fs_depth", "pointclip_v2": "v2_img_110"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    golden = np.load(FIXTURES)
    reference_points = torch.from_numpy(golden["points"]).to(args.device)
    generator = torch.Generator().manual_seed(0)
    clouds = torch.rand(args.batch, args.points, 3, generator=generator) * 2 - 1
    clouds = (clouds / clouds.norm(dim=-1).amax(dim=1)[:, None, None]).to(args.device)
    print(f"{'style':22s} {'ms / batch':>10s} {'ms / cloud':>10s} {'max |diff|':>11s} {'within 1e-5':>12s}")
    for style in GOLDEN:
        ours = render_views(reference_points, style).flatten(0, 1).cpu().numpy()
        expected = golden[GOLDEN[style]].reshape(ours.shape)
        difference = np.abs(ours - expected)
        render_views(clouds, style)
        times = []
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            render_views(clouds, style)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        median = float(np.median(times)) * 1000
        print(f"{style:22s} {median:10.1f} {median / args.batch:10.2f} {difference.max():11.2e} "
              f"{(difference <= 1e-5).mean():12.6f}")


if __name__ == "__main__":
    main()
