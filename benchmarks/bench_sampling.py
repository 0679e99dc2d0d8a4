"""Which points to keep of a large cloud: time and coverage of the sampling candidates on real shapes, stored in
spatial order (sorted along one axis, as scanners and LAS tiles store points), at one thread.

Shapes (from the `test` extra, read offline; see `testing_utils`): pyvista's airplane mesh (z up), sampled by
area to 100,000 and 1,000,000 points, and the Middlebury Motorcycle scan back-projected from its disparity (about
111,000 points, up is -y). Each cloud is turned y up and stored sorted by height.

Candidates, each picking 1,024 points: `first` (the reference), `random` (ours: the points of smallest coordinate
hash), `fps` (ours: torch farthest-point sampling from the first stored point) and the FPS variants of the
`fpsample` package (from the first stored point) when it is installed.

Figures, each against the whole cloud (centred and scaled to the unit sphere):
- `ms`: median time of the call (interleaved rounds) at `--threads` threads;
- `voxels`: share of the cloud's occupied voxels of a 32^3 grid over [-1, 1]^3 that hold a sample;
- `mass`: share of the cloud's points that lie in such a voxel (the voxels weighted by their points, so that a stray
  point in a voxel of its own counts little);
- `v1 px`: share of the pixels the whole cloud lights in the 6 PointCLIP V1 views that the sample lights too;
- `v2 IoU`: intersection over union of the shape's pixels in the 10 PointCLIP V2 views, sample vs whole cloud;
- `radius`: the largest distance from a point of the cloud to its nearest sample (lower is better);
- `isolated`: share of the samples among the cloud's 1% most isolated points (by the distance to their 8th nearest
  neighbour; 1% is what an unbiased sample gets; needs scipy);
- `order-free`: whether the cloud stored shuffled gives the same samples (as a set of points).

    python benchmarks/bench_sampling.py [--threads 1] [--repeats 5] [--sizes 100000,1000000] [--skip-slow]
"""

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pointclip_hf import load_point_cloud, render_views  # noqa: E402
from pointclip_hf.model.feature_extraction_pointclip import normalize_to_unit_sphere, sample_indices, turn_y_up  # noqa: E402
from pointclip_hf.testing_utils import motorcycle_scan, pyvista_mesh_path, sorted_along  # noqa: E402

NUM_SAMPLES = 1024
VOXELS_PER_SIDE = 32
SLOW_TORCH_FPS_POINTS = 200_000
FIGURES = ("voxels", "mass", "v1 px", "v2 IoU", "radius", "isolated")


def candidates(num_points: int, skip_slow: bool) -> dict:
    """Name -> function of a `[N, 3]` float32 tensor returning the indices of its samples."""
    runs = {method: _ours(method) for method in ("first", "random", "fps")}
    if skip_slow and num_points > SLOW_TORCH_FPS_POINTS:
        del runs["fps"]
    try:
        import fpsample
    except ImportError:
        return runs
    height = 9 if num_points >= 500_000 else 7  # the bucket height fpsample's documentation advises
    runs.update({
        "fpsample.fps_sampling": lambda cloud: fpsample.fps_sampling(cloud.numpy(), NUM_SAMPLES, start_idx=0),
        "fpsample.fps_npdu_kdtree": lambda cloud: fpsample.fps_npdu_kdtree_sampling(cloud.numpy(), NUM_SAMPLES,
                                                                                     start_idx=0),
        f"fpsample.bucket_kdline(h={height})": lambda cloud: fpsample.bucket_fps_kdline_sampling(
            cloud.numpy(), NUM_SAMPLES, h=height, start_idx=0),
        "fpsample.bucket_kdtree": lambda cloud: fpsample.bucket_fps_kdtree_sampling(cloud.numpy(), NUM_SAMPLES,
                                                                                    start_idx=0),
    })  # fmt: skip
    return runs


def _ours(method: str):
    return lambda cloud: sample_indices(cloud[None], NUM_SAMPLES, method)[0]


def shapes(sizes: list[int]) -> dict[str, torch.Tensor]:
    """Name -> a y-up `[N, 3]` float32 cloud, stored sorted by height."""
    airplane = pyvista_mesh_path("airplane")
    clouds = {f"airplane {size:,}": (load_point_cloud(airplane, num_mesh_samples=size), "z") for size in sizes}
    scan = motorcycle_scan()
    clouds[f"motorcycle scan {len(scan):,}"] = (scan, "-y")
    return {
        name: torch.from_numpy(sorted_along(turn_y_up(torch.from_numpy(points), up_axis).numpy(), column=1))
        for name, (points, up_axis) in clouds.items()
    }


def timed_medians(runs: dict, cloud: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median milliseconds of each run on `cloud`, timed round by round."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run(cloud)
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


class Coverage:
    """The coverage figures of samples of one cloud, against the whole cloud."""

    def __init__(self, cloud: torch.Tensor):
        self.cloud = normalize_to_unit_sphere(cloud[None].double())[0].float()
        self.voxel_of_point = self._voxel_ids(self.cloud)
        self.voxels = np.unique(self.voxel_of_point)
        self.v1 = render_views(self.cloud[None], "pointclip_v1")[0] > 0
        self.v2 = render_views(self.cloud[None], "pointclip_v2")[0] < 1
        self.isolated = self._most_isolated(self.cloud.numpy())

    def figures(self, indices) -> dict:
        samples = self.cloud[torch.as_tensor(np.asarray(indices), dtype=torch.long)]
        v1 = render_views(samples[None], "pointclip_v1")[0] > 0
        v2 = render_views(samples[None], "pointclip_v2")[0] < 1
        hit = np.unique(self._voxel_ids(samples))
        figures = {
            "voxels": len(np.intersect1d(hit, self.voxels)) / len(self.voxels),
            "mass": float(np.isin(self.voxel_of_point, hit).mean()),
            "v1 px": float((v1 & self.v1).sum() / self.v1.sum()),
            "v2 IoU": float((v2 & self.v2).sum() / (v2 | self.v2).sum()),
            "radius": self._coverage_radius(samples),
        }
        if self.isolated is not None:
            figures["isolated"] = float(self.isolated[np.asarray(indices)].mean())
        return figures

    @staticmethod
    def _voxel_ids(points: torch.Tensor) -> np.ndarray:
        cells = ((points + 1) / 2 * VOXELS_PER_SIDE).long().clamp(0, VOXELS_PER_SIDE - 1)
        return ((cells[:, 0] * VOXELS_PER_SIDE + cells[:, 1]) * VOXELS_PER_SIDE + cells[:, 2]).numpy()

    def _coverage_radius(self, samples: torch.Tensor) -> float:
        return max(float(torch.cdist(chunk, samples).amin(dim=1).max()) for chunk in self.cloud.split(1 << 16))

    @staticmethod
    def _most_isolated(points: np.ndarray) -> np.ndarray | None:
        try:
            from scipy.spatial import cKDTree
        except ImportError:
            return None
        distances, _ = cKDTree(points).query(points, k=9)
        return distances[:, -1] >= np.quantile(distances[:, -1], 0.99)


def same_samples(run, cloud: torch.Tensor, shuffled: torch.Tensor) -> bool:
    """Whether `run` picks the same points (as a set) from `cloud` and from `shuffled`, the same points reordered."""
    picked = [torch.unique(c[torch.as_tensor(np.asarray(run(c)), dtype=torch.long)], dim=0) for c in (cloud, shuffled)]
    return picked[0].shape == picked[1].shape and bool(torch.equal(*picked))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="100000,1000000", help="airplane sizes, comma-separated")
    parser.add_argument("--skip-slow", action="store_true", help=f"no torch FPS above {SLOW_TORCH_FPS_POINTS:,} points")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print(
        f"CPU {cpu_model()}, {args.threads} thread(s), torch {torch.__version__}, load average "
        f"{os.getloadavg()[0]:.2f} at start; {NUM_SAMPLES} samples, median of {args.repeats} interleaved rounds"
    )
    generator = torch.Generator().manual_seed(0)
    for name, cloud in shapes([int(size) for size in args.sizes.split(",")]).items():
        runs = candidates(len(cloud), args.skip_slow)
        slow = {key: run for key, run in runs.items() if key == "fps" and len(cloud) > SLOW_TORCH_FPS_POINTS}
        times = timed_medians({k: r for k, r in runs.items() if k not in slow}, cloud, args.repeats)
        times.update(timed_medians(slow, cloud, 1))
        coverage = Coverage(cloud)
        shuffled = cloud[torch.randperm(len(cloud), generator=generator)]
        print(f"\n{name} points, stored sorted by height (load average {os.getloadavg()[0]:.2f})")
        print(f"| candidate | ms | {' | '.join(FIGURES)} | order-free |\n|{'---|' * (len(FIGURES) + 3)}")
        for key, run in runs.items():
            figures = coverage.figures(run(cloud))
            cells = [f"{figures.get(figure, float('nan')):.3f}" for figure in FIGURES]
            order_free = "yes" if same_samples(run, cloud, shuffled) else "no"
            print(f"| {key} | {times[key]:.1f} | {' | '.join(cells)} | {order_free} |")


if __name__ == "__main__":
    main()
