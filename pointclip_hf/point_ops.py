"""Batched point operations: unit-sphere normalisation and point sampling (first, seeded random, farthest-point)."""

import warnings

import torch

SAMPLING_METHODS = ("first", "random", "fps")
FPS_WARNING_UPDATES = 1e9


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
    """Warn when farthest-point sampling would take minutes: it costs `num_points * num_samples` distance updates
    (10 M points to 1024 samples: about 25 minutes on a CPU)."""
    if num_points * num_samples > FPS_WARNING_UPDATES:
        warnings.warn(
            f"Farthest-point sampling of {num_points:,} points to {num_samples} takes {num_points * num_samples:.1e} "
            "distance updates and may run for minutes; sampling='random' is instant.",
            stacklevel=3,
        )


def point_hash(points: torch.Tensor, seed: int) -> torch.Tensor:
    """A pseudo-random number in [0, 1) per point `[B, N]`, a function of its coordinates and `seed` alone, so a
    cloud's "random" sample does not depend on the other clouds of its batch or on the device."""
    dtype = torch.float32 if points.device.type == "mps" else torch.float64  # MPS has no float64
    key = torch.tensor([12.9898, 78.233, 37.719], dtype=dtype, device=points.device)
    return torch.frac(torch.sin(points.to(dtype) @ key + seed * 0.6180339887) * 43758.5453)


def select_points(points: torch.Tensor, num_points: int, method: str, seed: int = 0):
    """
    Pick `num_points` of each `[B, N, 3]` cloud: `"first"` (the reference), `"random"` (a seeded pseudo-random
    subset that depends only on the cloud itself) or `"fps"`. A cloud with fewer points is padded by repeating its
    points cyclically (in the chosen order).
    """
    batch, available, _ = points.shape
    if method == "first":
        order = torch.arange(available, device=points.device).expand(batch, available)
    elif method == "random":
        order = point_hash(points, seed).argsort(dim=1, stable=True)
    elif method == "fps":
        order = farthest_point_sampling(points, min(num_points, available))
    else:
        raise ValueError(f"Unknown sampling method {method!r}; choose one of {SAMPLING_METHODS}.")
    if order.shape[1] != num_points:
        order = order[:, torch.arange(num_points, device=points.device) % order.shape[1]]
    return points.gather(1, order[..., None].expand(-1, -1, 3))


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
