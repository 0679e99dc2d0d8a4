"""Batched point operations: turning a cloud y up, unit-sphere normalisation and point sampling (first, seeded random,
farthest-point)."""

import warnings

import torch

from .choices import SAMPLING_METHODS, UP_AXES

FPS_WARNING_UPDATES = 3e7  # about a second on one CPU thread
_LOW_32_BITS = 0xFFFFFFFF
# The proper rotation that turns each up axis into +y: which input axis becomes x, y, z, and the signs they take.
_TO_Y_UP = {
    "y": ((0, 1, 2), (1, 1, 1)),
    "-y": ((0, 1, 2), (1, -1, -1)),
    "z": ((0, 2, 1), (1, 1, -1)),
    "-z": ((0, 2, 1), (1, -1, 1)),
    "x": ((1, 0, 2), (-1, 1, 1)),
    "-x": ((1, 0, 2), (1, -1, 1)),
}


def check_up_axis(up_axis: str | None) -> None:
    """Raise a `ValueError` naming the choices unless `up_axis` is one of `UP_AXES` or `None`."""
    if up_axis is not None and up_axis not in _TO_Y_UP:
        raise ValueError(f"Unknown up axis {up_axis!r}; choose one of {UP_AXES} (or None for the file's convention).")


def turn_y_up(points: torch.Tensor, up_axis: str) -> torch.Tensor:
    """
    Points `[..., 3]` whose up axis is `up_axis` turned so that it points along +y, as the projections expect: a
    rotation by quarter or half turns (an axis permutation with sign flips, exact in every dtype; `"y"` returns
    `points` itself). `"z"` maps `(x, y, z)` to `(x, z, -y)`, the conversion of z-up tools (Blender, CAD, LiDAR) to
    y-up ones (glTF), so their front (-y) faces +z.
    """
    check_up_axis(up_axis)
    if up_axis == "y":
        return points
    axes, signs = _TO_Y_UP[up_axis]
    return points[..., list(axes)] * torch.tensor(signs, dtype=points.dtype, device=points.device)


def normalize_to_unit_sphere(points: torch.Tensor) -> torch.Tensor:
    """Centre `[B, N, 3]` clouds on their mean and scale the farthest point to radius 1 (ModelNet's convention)."""
    centred = points - points.mean(dim=1, keepdim=True)
    radius = centred.norm(dim=-1).amax(dim=1)
    degenerate = radius <= torch.finfo(points.dtype).tiny
    if degenerate.any():
        index = int(degenerate.nonzero()[0])
        raise ValueError(
            f"Point cloud {index} is degenerate (a single point or all points identical) and cannot be scaled to "
            "the unit sphere; pass normalize=False to render it as is."
        )
    return centred / radius[:, None, None]


def farthest_point_sampling(points: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Indices `[B, num_samples]` of farthest-point samples of `[B, N, 3]` clouds, starting from point 0."""
    batch, num_points, _ = points.shape
    indices = torch.zeros(batch, num_samples, dtype=torch.long, device=points.device)
    distances = torch.full((batch, num_points), float("inf"), dtype=points.dtype, device=points.device)
    rows = torch.arange(batch, device=points.device)
    farthest = torch.zeros(batch, dtype=torch.long, device=points.device)
    for step in range(num_samples):  # inherently sequential in the samples; each step is batched over clouds
        indices[:, step] = farthest
        distances = torch.minimum(distances, (points - points[rows, farthest][:, None]).square().sum(-1))
        farthest = distances.argmax(dim=1)
    return indices


def warn_if_slow_farthest_point_sampling(num_points: int, num_samples: int) -> None:
    """Warn when farthest-point sampling would take seconds or more: it costs `num_points * num_samples` distance
    updates (100,000 points to 1024 samples: about 3 s on one CPU thread; see benchmarks/bench_sampling.py)."""
    if num_points * num_samples > FPS_WARNING_UPDATES:
        warnings.warn(
            f"Farthest-point sampling of {num_points:,} points to {num_samples} takes {num_points * num_samples:.1e} "
            "distance updates, seconds to minutes on a CPU; sampling='random' takes milliseconds.",
            stacklevel=3,
        )


def point_hash(points: torch.Tensor, seed: int) -> torch.Tensor:
    """
    A 32-bit hash per point `[B, N]` (int64 in `[0, 2**32)`) of `seed` and the bits of its float32 coordinates taken
    from the corner of its cloud's bounding box (a minimum, exact whatever the order of the points): a float64 cloud
    far from the origin (UTM coordinates) keeps distinct hashes and is sampled almost as it would be near the origin.
    A function of the cloud's points alone, exact on every device. Each coordinate is mixed in with Thomas Mueller's
    integer hash, whose 27-bit multiplier keeps every int64 product of 32-bit values from overflowing.
    """
    local = (points - points.amin(dim=1, keepdim=True)).float()
    words = local.view(torch.int32).to(torch.int64).bitwise_and_(_LOW_32_BITS)
    hashes = torch.full(words.shape[:-1], seed & _LOW_32_BITS, dtype=torch.int64, device=points.device)
    shifted = torch.empty_like(hashes)
    for word in words.unbind(-1):
        hashes.bitwise_xor_(word)
        for _ in range(2):
            hashes.bitwise_xor_(torch.bitwise_right_shift(hashes, 16, out=shifted)).mul_(0x45D9F3B)
            hashes.bitwise_and_(_LOW_32_BITS)
        hashes.bitwise_xor_(torch.bitwise_right_shift(hashes, 16, out=shifted))
    return hashes


def hash_order(points: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """
    Indices `[B, count]` of the `count` points of each `[B, N, 3]` cloud with the smallest [`point_hash`], in
    increasing hash; equal hashes are ordered by the coordinates (x, then y, then z). The result depends only on the
    set of points, never on the order they are stored in: points that tie on all of these are identical.
    """
    hashes = point_hash(points, seed)
    smallest = hashes.topk(count, dim=1, largest=False, sorted=False)
    threshold = smallest.values.amax(dim=1, keepdim=True)
    width = int((hashes <= threshold).sum(dim=1).max())  # more than count only where hashes tie at the threshold
    candidates = smallest.indices if width == count else hashes.topk(width, dim=1, largest=False).indices
    keys = [*gather_points(points, candidates).unbind(-1)[::-1], hashes.gather(1, candidates)]
    order = torch.arange(width, device=points.device).expand_as(candidates)
    for key in keys:  # lexicographic order of (hash, x, y, z): stable sorts, the least significant key first
        order = order.gather(1, key.gather(1, order).argsort(dim=1, stable=True))
    return candidates.gather(1, order[:, :count])


def sample_indices(points: torch.Tensor, num_points: int, method: str, seed: int = 0) -> torch.Tensor:
    """
    Indices `[B, num_points]` of the points picked from each `[B, N, 3]` cloud by `method`: `"first"` (the
    reference), `"random"` (the points of smallest [`point_hash`], a seeded pseudo-random subset that depends only on
    the set of points, not on their stored order, their batch or the device) or `"fps"` (farthest-point sampling from
    the first point). A cloud with fewer points is padded by repeating its points cyclically (in the chosen order).
    """
    check_sampling(method)
    batch, available, _ = points.shape
    if method == "first":
        order = torch.arange(available, device=points.device).expand(batch, available)
    elif method == "random":
        order = hash_order(points, min(num_points, available), seed)
    else:
        order = farthest_point_sampling(points, min(num_points, available))
    if order.shape[1] != num_points:
        order = order[:, torch.arange(num_points, device=points.device) % order.shape[1]]
    return order


def gather_points(points: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The points `[B, K, 3]` of `[B, N, 3]` clouds at `indices` `[B, K]`."""
    return points.gather(1, indices[..., None].expand(-1, -1, points.shape[-1]))


def check_sampling(method: str) -> None:
    """Raise a `ValueError` naming the choices unless `method` is one of `SAMPLING_METHODS`."""
    if method not in SAMPLING_METHODS:
        raise ValueError(f"Unknown sampling method {method!r}; choose one of {SAMPLING_METHODS}.")


def check_point_batch(points: torch.Tensor) -> None:
    """Raise unless `points` is a finite floating-point tensor of shape `(batch, num_points >= 1, 3)`."""
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}.")
    if not points.is_floating_point():
        raise TypeError(f"points must be a floating-point tensor, got dtype {points.dtype}.")
    if points.ndim != 3:
        raise ValueError(
            f"points must have shape [batch, num_points, 3], got rank {points.ndim} with shape {tuple(points.shape)}."
        )
    if points.shape[-1] != 3:
        raise ValueError(f"points must have 3 coordinates in the last dimension, got {tuple(points.shape)}.")
    if points.shape[1] == 0:
        raise ValueError("points must hold at least one point per cloud, got num_points = 0.")
    if not torch.isfinite(points).all():
        raise ValueError("points contain NaN or inf values.")


def euler_to_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Euler angles `[V, 3]` (x, y, z) -> rotation matrices `[V, 3, 3]`, R = Rx @ Ry @ Rz."""
    x, y, z = angles.unbind(-1)
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rot_z = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], dim=-1)
    rot_y = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], dim=-1)
    rot_x = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], dim=-1)
    return rot_x.view(-1, 3, 3) @ rot_y.view(-1, 3, 3) @ rot_z.view(-1, 3, 3)
