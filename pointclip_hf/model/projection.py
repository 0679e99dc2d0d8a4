"""Point cloud -> multi-view single-channel maps, as in PointCLIP and PointCLIP V2.

Three projection styles, each a faithful, batched port of the reference code:

- `"pointclip_v1"` (PointCLIP zero-shot): 6 views (4 around the up axis, top, bottom), perspective camera at
  distance 1.6, 128x128 maps. Each pixel holds the harmonic mean of the depths of the points falling in it;
  empty pixels are 0.
- `"pointclip_v1_fewshot"` (PointCLIP few-shot): the same splat with 10 views (4 side, 4 corner, top, bottom),
  camera at distance 1.4, rendered directly at 224x224.
- `"pointclip_v2"` (PointCLIP V2 "realistic projection"): 10 tilted views, per-view bounding-box normalisation,
  orthographic voxelisation into a 112x112x8 grid (max of the depth coordinate), 7x7 max-pool densification,
  3x3 Gaussian smoothing, max over depth, per-image max normalisation and inversion: 110x110 maps in [0, 1]
  with a white (1) background.
- `"pointclip_v2_part_segmentation"` (PointCLIP V2 part segmentation): 10 denser 224x224 views, cropped and resized
  back to 224; see `projection_part_segmentation`, which also gives each point's pixel and visibility.

`render_views(points [B, N, 3], style) -> [B, V, H, W]` at the style's native resolution. Any resize to the CLIP
input size and the repeat to 3 channels are left to the caller.

Deviations from the reference code, all outside the range of valid inputs it was written for:

- V1: points behind the camera or out of frame are dropped rather than given weight 0, so a point with a tiny
  negative depth cannot produce a NaN.
- V2: a view whose points all coincide (bounding-box extent 0) is rendered with extent 1, i.e. as a single dot,
  and an all-zero image would stay white; the reference divides by zero and returns NaN in both cases.
"""

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .cpu_threads import map_on_cpu_threads, num_worker_threads


@dataclass(frozen=True)
class ProjectionStyle:
    """Public description of a projection style: number of views, native output size and background value."""

    name: str
    num_views: int
    resolution: int
    background: float


STYLES: dict[str, ProjectionStyle] = {
    "pointclip_v1": ProjectionStyle("pointclip_v1", num_views=6, resolution=128, background=0.0),
    "pointclip_v1_fewshot": ProjectionStyle("pointclip_v1_fewshot", num_views=10, resolution=224, background=0.0),
    "pointclip_v2": ProjectionStyle("pointclip_v2", num_views=10, resolution=110, background=1.0),
    "pointclip_v2_part_segmentation": ProjectionStyle(
        "pointclip_v2_part_segmentation", num_views=10, resolution=224, background=1.0
    ),
}


class _Cameras(NamedTuple):
    """Euler angles (x, y, z) per view, optional per-view tilt angles (V2), and the translation subtracted."""

    angles: tuple[tuple[float, float, float], ...]
    translation: tuple[float, float, float]
    tilts: tuple[tuple[float, float, float], ...] | None = None


_PI = math.pi
_SIDE_VIEWS = tuple((k * _PI / 2, 0.0, _PI / 2) for k in range(4))
_TOP_BOTTOM_VIEWS = ((0.0, -_PI / 2, _PI / 2), (0.0, _PI / 2, _PI / 2))
_CORNER_VIEWS = (
    (5 * _PI / 4, -_PI / 4, _PI / 2),
    (5 * _PI / 4, _PI / 4, _PI / 2),
    (7 * _PI / 4, -_PI / 4, _PI / 2),
    (7 * _PI / 4, _PI / 4, _PI / 2),
)
_V2_DIAGONAL_VIEWS = tuple((k * _PI / 4, 0.0, _PI / 2) for k in (1, 3, 5, 7))

_CAMERAS = {
    "pointclip_v1": _Cameras(_SIDE_VIEWS + _TOP_BOTTOM_VIEWS, translation=(0.0, 0.0, -1.6)),
    "pointclip_v1_fewshot": _Cameras(_SIDE_VIEWS + _CORNER_VIEWS + _TOP_BOTTOM_VIEWS, translation=(0.0, 0.0, -1.4)),
    "pointclip_v2": _Cameras(
        _V2_DIAGONAL_VIEWS + _SIDE_VIEWS + _TOP_BOTTOM_VIEWS,
        translation=(-0.5, -0.5, -1.5),
        tilts=((0.0, _PI / 9, 0.0),) * 8 + ((0.0, _PI / 15, 0.0),) * 2,
    ),
}

# V1 perspective splat.
_EPS = 1e-12

# V2 realistic projection (the reference `params`).
_GRID_RESOLUTION = 112
_GRID_DEPTH = 8
_OBJ_RATIO = 0.8
_DEPTH_BIAS = 0.2
_MAXPOOL_SIZE = 7
_MAXPOOL_PADDING = 2
_GAUSSIAN_SIZE = 3
_GAUSSIAN_SIGMA = 3.0


def get_projection_style(style: str) -> ProjectionStyle:
    """Return the [`ProjectionStyle`] called `style`, or raise a `ValueError` listing the valid names."""
    if style not in STYLES:
        raise ValueError(f"Unknown projection style {style!r}; valid styles are {', '.join(STYLES)}.")
    return STYLES[style]


def view_names(style: str) -> list[str]:
    """Where each view of `style` looks from, in the cloud's frame (y up, +z towards the viewer, +x to the right):
    `"front"`, `"back"`, `"left"`, `"right"`, between two of them `"front-right"`, ..., straight above or below
    `"top"` or `"bottom"`, with `" above"` or `" below"` added for a camera raised or lowered by more than 15 degrees.

    Args:
        style (`str`): one of `STYLES`.

    Returns:
        `list[str]`: one name per view, in the order of `render_views`.
    """
    get_projection_style(style)
    cpu, float32 = torch.device("cpu"), torch.float32
    if style == "pointclip_v2_part_segmentation":
        rotation, x_tilt, y_tilt, _ = _part_segmentation_projection()._view_transforms(cpu, float32)
        view_axes = rotation @ x_tilt @ y_tilt
    else:
        rotation, tilt, _ = _view_transforms(style, cpu, float32)
        view_axes = rotation if tilt is None else rotation @ tilt
    # Each view looks along its depth axis: V1 keeps the near points (small depth), V2 the far ones (max depth).
    cameras = view_axes[:, :, 2] * (-1.0 if style.startswith("pointclip_v1") else 1.0)
    return [_direction_name(*camera.tolist()) for camera in cameras]


def _direction_name(x: float, y: float, z: float) -> str:
    if abs(y) > 0.9:
        return "top" if y > 0 else "bottom"
    sides = [name for name, value in (("front", z), ("back", -z), ("left", -x), ("right", x)) if value > 0.3]
    height = " above" if y > 0.25 else " below" if y < -0.25 else ""
    return "-".join(sides) + height


def render_views(points: torch.Tensor, style: str = "pointclip_v1") -> torch.Tensor:
    """Render every cloud from every view of `style`. On the CPU the clouds are rendered in groups, one group per
    worker thread (`pointclip_hf.model.cpu_threads`; for the depth splats, only batches of at least 16 clouds per
    worker are shared out); a cloud's maps do not depend on its group or the thread count.

    Args:
        points (`torch.Tensor` of shape `[B, N, 3]`): floating-point clouds, y-up, roughly in the unit sphere.
        style (`str`): one of `STYLES`.

    Returns:
        `torch.Tensor` of shape `[B, V, H, W]`: single-channel maps at the style's native resolution, on the
        device and in the dtype of `points` (half-precision inputs are computed in float32).
    """
    spec = get_projection_style(style)
    if spec.name == "pointclip_v2_part_segmentation":
        return _part_segmentation_projection().render_part_images(points, image_size=spec.resolution).to(points.dtype)
    if not isinstance(points, torch.Tensor) or points.ndim != 3:
        check_point_batch(points)
    maps = points.new_empty(len(points) * spec.num_views, spec.resolution, spec.resolution)
    # Workers write their rows of `maps` in place; autograd cannot follow writes from several threads: one group then.
    tracked = torch.is_grad_enabled() and points.requires_grad
    groups = num_worker_threads(points.device)
    if spec.name != "pointclip_v2":
        groups = min(groups, max(1, len(points) // _MIN_SPLAT_CLOUDS_PER_WORKER))
    group = len(points) if tracked else -(-len(points) // groups)
    starts = range(0, len(points), max(1, group))
    rows = [slice(start * spec.num_views, (start + group) * spec.num_views) for start in starts]
    map_on_cpu_threads(lambda item: _render_group(points[item[0] : item[0] + group], spec, maps[item[1]]),
                       zip(starts, rows), points.device)  # fmt: skip
    return maps.view(len(points), spec.num_views, spec.resolution, spec.resolution)


def _part_segmentation_projection():
    """The part-segmentation projection module, from the installed package: a classifier's saved code leaves it out
    (the part-segmentation model's saved code carries it, through its pipeline)."""
    try:
        from pointclip_hf.model import projection_part_segmentation
    except ImportError:
        raise ImportError("The pointclip_v2_part_segmentation projection needs the pointclip_hf package.") from None
    return projection_part_segmentation


def _render_group(points: torch.Tensor, spec: ProjectionStyle, out: torch.Tensor) -> None:
    """Check `[B, N, 3]` clouds and render their `[B * V, H, W]` maps into `out`."""
    check_point_batch(points)
    compute_dtype = _compute_dtype(points.dtype)
    rotation, tilt, translation = _view_transforms(spec.name, points.device, compute_dtype)

    def to_camera(clouds: torch.Tensor) -> torch.Tensor:
        cam = clouds.unsqueeze(1) @ rotation
        if tilt is not None:
            cam = cam @ tilt
        return (cam - translation).flatten(0, 1)

    maps = out if out.dtype == compute_dtype else torch.empty_like(out, dtype=compute_dtype)
    if spec.name == "pointclip_v2":
        _realistic_projection(points.to(compute_dtype), to_camera, spec.num_views, maps)
    else:
        _splat_depth(points.to(compute_dtype), to_camera, spec.num_views, maps)
    if maps is not out:
        out.copy_(maps)


def splat_depth(points_cam: torch.Tensor, resolution: int) -> torch.Tensor:
    """PointCLIP's `points2depth` with a 1x1 splat: camera-frame points `[M, N, 3]` -> depth maps `[M, H, W]`.

    Pixel (row, col) = (ceil(u - 0.5), ceil(v - 0.5)) with u = (x / z + 1) * H / 2 and v = (y / z + 1) * W / 2.
    Each pixel holds the harmonic mean of the depths z of its points; points with z < 0 or out of frame are
    dropped; empty pixels are 0.
    """
    maps = points_cam.new_empty(len(points_cam), resolution, resolution, dtype=_compute_dtype(points_cam.dtype))
    _splat_depth(points_cam.to(maps.dtype), lambda cam: cam, 1, maps)
    return maps.to(points_cam.dtype)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@functools.cache
@torch.inference_mode(False)  # cached tensors must stay usable under autograd even if first built in inference mode
def _view_transforms(
    style: str, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Per-view `R.T` `[V, 3, 3]` (points are row vectors), optional tilt `R.T`, and the translation `[3]`.

    Built in float32 from float32 angles like the reference, so that cos(pi / 2) etc. round identically.
    """
    cameras = _CAMERAS[style]
    rotation = euler_to_rotation(torch.tensor(cameras.angles, dtype=torch.float32)).transpose(1, 2)
    tilt = None
    if cameras.tilts is not None:
        tilt = euler_to_rotation(torch.tensor(cameras.tilts, dtype=torch.float32)).transpose(1, 2)
        tilt = tilt.to(device=device, dtype=dtype)
    translation = torch.tensor(cameras.translation, dtype=torch.float32)
    return rotation.to(device=device, dtype=dtype), tilt, translation.to(device=device, dtype=dtype)


# Clouds each worker needs before a depth splat is shared out: a splat is bound by memory traffic, and on 2 shared
# cores two workers were 0.72-0.90x as fast as one for 4-16 few-shot clouds and 0.93-1.14x for 8-16 V1 clouds, but
# 1.4-1.6x for 32 of either.
_MIN_SPLAT_CLOUDS_PER_WORKER = 16

# Work sizes on the CPU: point-view terms computed at once (a few MB of scratch, whatever the cloud's size), and the
# pixels of the maps whose sums a splat accumulates at once (1 MB in float32, so that its random writes stay in cache).
_CPU_POINT_VIEWS_PER_CHUNK = 1 << 18
_CPU_PIXELS_PER_CHUNK = 1 << 18


def _point_chunks(points: torch.Tensor, num_views: int) -> list[tuple[slice, slice]]:
    """(clouds, points) ranges of `[B, N, 3]` holding at most `_CPU_POINT_VIEWS_PER_CHUNK` point-views each on the
    CPU (whole clouds when they fit, else slices of one cloud's points), everything at once elsewhere."""
    batch, num_points, _ = points.shape
    if points.device.type != "cpu":
        return [(slice(0, batch), slice(0, num_points))]
    clouds_per_chunk = max(1, _CPU_POINT_VIEWS_PER_CHUNK // (num_views * num_points))
    points_per_chunk = max(1, _CPU_POINT_VIEWS_PER_CHUNK // num_views) if clouds_per_chunk == 1 else num_points
    return [
        (slice(first, min(first + clouds_per_chunk, batch)), slice(start, start + points_per_chunk))
        for first in range(0, batch, clouds_per_chunk)
        for start in range(0, num_points, points_per_chunk)
    ]


def _splat_depth(points: torch.Tensor, to_camera, num_views: int, out: torch.Tensor) -> None:
    """Harmonic-mean depth splat of `[B, N, 3]` clouds, `to_camera` taking clouds to `[B * V, N, 3]` camera frames,
    into `out` `[B * V, H, W]`.

    Bit-identical to the reference: the same float32 operations in the same order, and each pixel's sums taken
    over its points in point order. On the CPU the terms of `_CPU_POINT_VIEWS_PER_CHUNK` point-views are computed at
    a time, and the sums of `_CPU_PIXELS_PER_CHUNK` pixels accumulated at a time, so that the random writes stay in
    cache (whole-batch scratch made it 2-3x slower); a cloud too large for one chunk has its maps summed together.
    """
    resolution = out.shape[-1]
    num_points, num_pixels = points.shape[1], resolution * resolution
    maps = out.view(len(out), num_pixels)
    chunks = _point_chunks(points, num_views)
    maps_per_sum = max(1, _CPU_PIXELS_PER_CHUNK // num_pixels) if points.device.type == "cpu" else max(1, len(maps))
    if any(point_range.stop < num_points for _, point_range in chunks):
        maps_per_sum = num_views
    # One buffer for every group's weight sums (a fresh one each made the heap grow and shrink, faulting pages in
    # every call), except where autograd keeps each group's sums for the backward pass.
    tracked = torch.is_grad_enabled() and points.requires_grad
    weight_buffer = None if tracked else maps.new_empty(min(maps_per_sum, len(maps)) * num_pixels)
    weight_sums = None
    for clouds, point_range in chunks:
        slot, weighted_depth, weight = _splat_terms(to_camera(points[clouds, point_range]), resolution, maps_per_sum)
        for start in range(0, len(slot), maps_per_sum):
            rows = slice(start, start + maps_per_sum)
            first = clouds.start * num_views + start
            depth_sums = maps[first : first + len(slot[rows])].view(-1)
            if point_range.start == 0:
                depth_sums.zero_()
                weight_sums = torch.zeros_like(depth_sums) if tracked else weight_buffer[: len(depth_sums)].zero_()
            depth_sums.index_add_(0, slot[rows].flatten(), weighted_depth[rows].flatten())
            weight_sums.index_add_(0, slot[rows].flatten(), weight[rows].flatten())
            if point_range.stop >= num_points:
                depth_sums.div_(weight_sums.clamp_min_(torch.finfo(weight_sums.dtype).tiny))


def _splat_terms(
    points_cam: torch.Tensor, resolution: int, maps_per_sum: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per camera-frame point `[M, N, 3]`: its slot in the flattened maps of its group of `maps_per_sum` maps,
    `depth * weight` and its weight `1 / (depth + eps)`; both terms are 0 for points no pixel keeps (adding 0 to a
    sum leaves its bits unchanged).

    Pixel (row, col) = (ceil(u - 0.5), ceil(v - 0.5)) with u = (x / z + 1) * H / 2 and v = (y / z + 1) * W / 2
    (multiplying by H / 2 rounds exactly like the reference's `* H` then `/ 2`). NaN and inf never equal their
    clamped value, so they are dropped with the out-of-frame points.
    """
    depth = points_cam[..., 2]
    shifted_depth = depth + _EPS
    weight = 1 / shifted_depth
    weighted_depth = depth * weight
    with torch.no_grad():
        coords = points_cam[..., :2] / shifted_depth.unsqueeze(-1)
        coords = coords.add_(1).mul_(resolution / 2).sub_(0.5).ceil_()
        pixel = coords.clamp(0, resolution - 1)
        in_frame = pixel == coords
        keep = in_frame[..., 0] & in_frame[..., 1] & (depth >= 0)
        num_pixels = resolution * resolution
        index_dtype = torch.int32 if maps_per_sum * num_pixels < 2**31 else torch.int64  # half the traffic of int64
        row, col = pixel.to(index_dtype).unbind(-1)
        map_in_sum = torch.arange(len(points_cam), device=points_cam.device, dtype=index_dtype) % maps_per_sum
        slot = (row * resolution).add_(col).add_(map_in_sum.unsqueeze(1) * num_pixels).masked_fill_(~keep, 0)
    return slot, torch.where(keep, weighted_depth, 0.0), torch.where(keep, weight, 0.0)


def _realistic_projection(points: torch.Tensor, to_camera, num_views: int, out: torch.Tensor) -> None:
    """PointCLIP V2 `points2grid` + `Grid2Image` for `[B, N, 3]` clouds, `to_camera` taking clouds to their view
    frames `[B * V, N, 3]`, into `out` `[B * V, 110, 110]`, in [0, 1]. On CPU the maps go one cloud at a time: their
    voxel grids (4 MB) stay in cache, while a whole batch's (130 MB for 32 clouds) does not, which made it 2.5-4x
    slower; and every call has the same shape, whatever the batch."""
    clouds = 1 if points.device.type == "cpu" else len(points)
    for start in range(0, len(points), clouds):
        grid = _points_to_grid(points[start : start + clouds], to_camera, num_views)
        out[start * num_views : (start + clouds) * num_views] = _grid_to_image(grid)


def _grid_to_image(grid: torch.Tensor) -> torch.Tensor:
    """Voxel grids `[M, depth, 112, 112]` -> images `[M, 110, 110]`: densify, smooth, squeeze depth, normalise."""
    num_maps, depth, size, _ = grid.shape
    pooled = size + 2 * _MAXPOOL_PADDING - _MAXPOOL_SIZE + 1

    # Densify: the reference's 7x7 max-pool (stride 1, padding 2) as two exact 1-D pools, first along x, then,
    # after the reference's permute to rows = x, along y. Much faster on CPU than a 2-D pool.
    images = F.max_pool1d(grid.view(-1, 1, size), _MAXPOOL_SIZE, stride=1, padding=_MAXPOOL_PADDING)
    images = images.view(num_maps, depth, size, pooled).transpose(-1, -2).contiguous()
    images = F.max_pool1d(images.view(-1, 1, size), _MAXPOOL_SIZE, stride=1, padding=_MAXPOOL_PADDING)
    images = images.view(num_maps, depth, pooled, pooled)

    # Smooth each depth slice (a grouped conv in channels-last layout is the fast CPU path), then squeeze depth.
    kernel = _gaussian_kernel(grid.device, grid.dtype).expand(depth, 1, -1, -1)
    images = images.contiguous(memory_format=torch.channels_last)
    images = F.conv2d(images, kernel, padding=_GAUSSIAN_SIZE // 2, groups=depth).amax(dim=1)

    peak = images.amax(dim=(-2, -1), keepdim=True)
    return 1 - images / peak.clamp_min(torch.finfo(images.dtype).tiny)


def _points_to_grid(points: torch.Tensor, to_camera, num_views: int) -> torch.Tensor:
    """Orthographic voxelisation of `[B, N, 3]` clouds -> `[B * V, depth, y, x]` holding the max depth coordinate per
    voxel. Each view is normalised to its bounding box, then its points are written `_CPU_POINT_VIEWS_PER_CHUNK` at a
    time (a large cloud's view frames are computed twice, never held whole); maxima do not depend on the order."""
    chunks = [(slice(clouds.start * num_views, clouds.stop * num_views), points[clouds, point_range])
              for clouds, point_range in _point_chunks(points, num_views)]  # fmt: skip
    held = [to_camera(chunks[0][1])] if len(chunks) == 1 else None

    def cameras():
        return zip((maps for maps, _ in chunks), held or (to_camera(part) for _, part in chunks))

    bounds = {}  # per range of maps: the highest and lowest coordinates of its views, over all its chunks
    for maps, cam in cameras():
        high, low = cam.amax(dim=1, keepdim=True), cam.amin(dim=1, keepdim=True)
        if maps.start in bounds:
            high, low = torch.maximum(bounds[maps.start][0], high), torch.minimum(bounds[maps.start][1], low)
        bounds[maps.start] = high, low
    upper, lower = (torch.cat(parts) for parts in zip(*bounds.values()))
    center = (upper + lower) / 2
    extent = (upper - lower).amax(dim=-1, keepdim=True)
    extent = torch.where(extent > 0, extent, 1.0)  # all points coincide: avoid 0 / 0
    size, depth = _GRID_RESOLUTION, _GRID_DEPTH
    num_maps = len(points) * num_views
    grid = points.new_zeros(num_maps * depth * size * size)
    for maps, cam in cameras():
        voxel, value = _voxels(cam, center[maps], extent[maps], maps.start)
        grid.scatter_reduce_(0, voxel.flatten(), value.flatten(), reduce="amax", include_self=True)
    return grid.view(num_maps, depth, size, size)


def _voxels(
    points_cam: torch.Tensor, center: torch.Tensor, extent: torch.Tensor, first_map: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat voxel index `[M, N]` into the grids `[maps, depth, y, x]` and depth coordinate of the view-frame points
    `[M, N, 3]` of maps `first_map, ...`."""
    size, depth = _GRID_RESOLUTION, _GRID_DEPTH
    points = (points_cam - center) / extent * 2
    x, y, z = points.unbind(-1)
    x, y = x * _OBJ_RATIO, y * _OBJ_RATIO

    x_index = torch.ceil((x + 1) / 2 * size).clamp(1, size - 2)
    y_index = torch.ceil((y + 1) / 2 * size).clamp(1, size - 2)
    z = ((z + 1) / 2 + _DEPTH_BIAS) / (1 + _DEPTH_BIAS) * (depth - 2)
    # The index uses the unclipped ceil of the depth coordinate (in [1, 7]), the value the clipped coordinate.
    z_index = torch.ceil(z).clamp(0, depth - 1)
    value = z.clamp(1, depth - 2)

    map_index = torch.arange(first_map, first_map + len(points_cam), device=points_cam.device)
    map_offset = map_index.unsqueeze(1) * (depth * size * size)
    voxel = map_offset + (z_index.long() * size + y_index.long()) * size + x_index.long()
    return voxel, value


@functools.cache
@torch.inference_mode(False)
def _gaussian_kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalised `[1, 1, 3, 3]` Gaussian, sigma 3 (V2's smoothing conv), built in float32 like the reference."""
    offsets = torch.arange(_GAUSSIAN_SIZE, dtype=torch.float32) - _GAUSSIAN_SIZE // 2
    kernel_1d = torch.exp(-(offsets**2) / (2 * _GAUSSIAN_SIGMA**2))
    kernel = torch.outer(kernel_1d, kernel_1d)
    return (kernel / kernel.sum()).view(1, 1, _GAUSSIAN_SIZE, _GAUSSIAN_SIZE).to(device=device, dtype=dtype)


def check_point_batch(points: torch.Tensor) -> None:
    """Raise a `TypeError` unless `points` is a floating-point tensor, and a `ValueError` naming the first problem
    unless it is finite and of shape `(batch, num_points >= 1, 3)`."""
    if not isinstance(points, torch.Tensor) or not points.is_floating_point():
        got = f"dtype {points.dtype}" if isinstance(points, torch.Tensor) else f"a {type(points).__name__}"
        raise TypeError(f"points must be a floating-point torch.Tensor, got {got}.")
    problem = next((message for failed, message in _point_batch_checks(points) if failed), None)
    if problem:
        raise ValueError(f"points {problem}.")


def _point_batch_checks(points: torch.Tensor):
    """(failed, message) of each shape and value check of a `[B, N, 3]` tensor, in order: each is evaluated only when
    those before it passed."""
    shape = tuple(points.shape)
    yield points.ndim != 3, f"must have shape [batch, num_points, 3], got rank {points.ndim} with shape {shape}"
    yield shape[-1] != 3, f"must have 3 coordinates in the last dimension, got {shape}"
    yield shape[1] == 0, "must hold at least one point per cloud, got num_points = 0"
    yield not torch.isfinite(points).all(), "contain NaN or inf values"


def euler_to_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Euler angles `[V, 3]` (x, y, z) -> rotation matrices `[V, 3, 3]`, R = Rx @ Ry @ Rz."""
    x, y, z = angles.unbind(-1)
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rot_z = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], dim=-1)
    rot_y = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], dim=-1)
    rot_x = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], dim=-1)
    return rot_x.view(-1, 3, 3) @ rot_y.view(-1, 3, 3) @ rot_z.view(-1, 3, 3)
