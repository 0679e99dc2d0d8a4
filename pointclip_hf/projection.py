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
  back to 224; see `pointclip_hf.projection_part_segmentation`, which also gives each point's pixel and visibility.

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

from .point_ops import check_point_batch, euler_to_rotation


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
        from .projection_part_segmentation import _view_transforms as part_view_transforms

        rotation, x_tilt, y_tilt, _ = part_view_transforms(cpu, float32)
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
    """Render every cloud from every view of `style`.

    Args:
        points (`torch.Tensor` of shape `[B, N, 3]`): floating-point clouds, y-up, roughly in the unit sphere.
        style (`str`): one of `STYLES`.

    Returns:
        `torch.Tensor` of shape `[B, V, H, W]`: single-channel maps at the style's native resolution, on the
        device and in the dtype of `points` (half-precision inputs are computed in float32).
    """
    spec = get_projection_style(style)
    if spec.name == "pointclip_v2_part_segmentation":
        from .projection_part_segmentation import render_part_views

        return render_part_views(points, image_size=spec.resolution).images.to(points.dtype)
    check_point_batch(points)
    compute_dtype = _compute_dtype(points.dtype)
    batch, num_points, _ = points.shape
    rotation, tilt, translation = _view_transforms(spec.name, points.device, compute_dtype)

    cam = points.to(compute_dtype).unsqueeze(1) @ rotation
    if tilt is not None:
        cam = cam @ tilt
    cam = (cam - translation).reshape(batch * spec.num_views, num_points, 3)

    if spec.name == "pointclip_v2":
        maps = _realistic_projection(cam, spec.num_views)
    else:
        maps = _splat_depth(cam, spec.resolution)
    return maps.view(batch, spec.num_views, spec.resolution, spec.resolution).to(points.dtype)


def splat_depth(points_cam: torch.Tensor, resolution: int) -> torch.Tensor:
    """PointCLIP's `points2depth` with a 1x1 splat: camera-frame points `[M, N, 3]` -> depth maps `[M, H, W]`.

    Pixel (row, col) = (ceil(u - 0.5), ceil(v - 0.5)) with u = (x / z + 1) * H / 2 and v = (y / z + 1) * W / 2.
    Each pixel holds the harmonic mean of the depths z of its points; points with z < 0 or out of frame are
    dropped; empty pixels are 0.
    """
    compute_dtype = _compute_dtype(points_cam.dtype)
    return _splat_depth(points_cam.to(compute_dtype), resolution).to(points_cam.dtype)


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


def _splat_depth(points_cam: torch.Tensor, resolution: int) -> torch.Tensor:
    """Harmonic-mean depth splat of `[M, N, 3]` camera-frame points into `[M, H, W]`.

    Bit-identical to the reference: the same float32 operations in the same order, and each pixel's sums taken
    over its points in point order. On CPU the maps are accumulated `_CPU_PIXELS_PER_CHUNK` pixels at a time, so
    that the two scratch sums stay in cache; whole-batch scratch buffers (25 MB for 32 clouds) made it 2-3x slower.
    """
    num_maps, _, _ = points_cam.shape
    depth = points_cam[..., 2]
    shifted_depth = depth + _EPS
    weight = 1 / shifted_depth
    weighted_depth = depth * weight

    num_pixels = resolution * resolution
    maps_per_chunk = max(1, num_maps)
    if points_cam.device.type == "cpu":
        maps_per_chunk = min(maps_per_chunk, max(1, _CPU_PIXELS_PER_CHUNK // num_pixels))
    slot = _pixel_slots(points_cam, shifted_depth, resolution, maps_per_chunk)

    maps = points_cam.new_empty(num_maps, num_pixels)
    for start in range(0, num_maps, maps_per_chunk):
        chunk = slice(start, start + maps_per_chunk)
        sums = _harmonic_mean(slot[chunk], weighted_depth[chunk], weight[chunk], maps_per_chunk * num_pixels + 1)
        maps[chunk] = sums[: maps[chunk].numel()].view_as(maps[chunk])
    return maps.view(num_maps, resolution, resolution)


def _pixel_slots(
    points_cam: torch.Tensor, shifted_depth: torch.Tensor, resolution: int, maps_per_chunk: int
) -> torch.Tensor:
    """Each point's index `[M, N]` into its chunk's flattened maps; dropped points go to the slot after the last.

    Pixel (row, col) = (ceil(u - 0.5), ceil(v - 0.5)) with u = (x / z + 1) * H / 2 and v = (y / z + 1) * W / 2
    (multiplying by H / 2 rounds exactly like the reference's `* H` then `/ 2`). NaN and inf never equal their
    clamped value, so they are dropped with the out-of-frame points.
    """
    with torch.no_grad():
        coords = points_cam[..., :2] / shifted_depth.unsqueeze(-1)
        coords = coords.add_(1).mul_(resolution / 2).sub_(0.5).ceil_()
        pixel = coords.clamp(0, resolution - 1)
        in_frame = pixel == coords
        keep = in_frame[..., 0] & in_frame[..., 1] & (points_cam[..., 2] >= 0)
        row, col = pixel.long().unbind(-1)
        num_pixels = resolution * resolution
        map_in_chunk = torch.arange(points_cam.shape[0], device=points_cam.device).remainder_(maps_per_chunk)
        slot = (row * resolution).add_(col).add_(map_in_chunk.unsqueeze(1) * num_pixels)
        return slot.masked_fill_(~keep, maps_per_chunk * num_pixels)


def _harmonic_mean(
    slot: torch.Tensor, weighted_depth: torch.Tensor, weight: torch.Tensor, scratch_size: int
) -> torch.Tensor:
    """`sum(depth * weight) / sum(weight)` per slot over `scratch_size` slots, flattened; empty slots are 0."""
    slot = slot.flatten()
    depth_sum = weight.new_zeros(scratch_size).index_add_(0, slot, weighted_depth.flatten())
    weight_sum = weight.new_zeros(scratch_size).index_add_(0, slot, weight.flatten())
    return depth_sum / weight_sum.clamp_min_(torch.finfo(weight.dtype).tiny)


# Pixels per scratch sum on CPU (1 MB in float32): 2 clouds of V1's 6 maps of 128 x 128, or 1 few-shot cloud.
_CPU_PIXELS_PER_CHUNK = 1 << 18


def _realistic_projection(points_cam: torch.Tensor, maps_per_cloud: int) -> torch.Tensor:
    """PointCLIP V2 `points2grid` + `Grid2Image` for `[M, N, 3]` view-frame points -> `[M, 110, 110]` in [0, 1].
    On CPU the maps go one cloud at a time: their voxel grids (4 MB) stay in cache, while a whole batch's (130 MB
    for 32 clouds) does not, which made it 2.5-4x slower; and every call has the same shape, whatever the batch."""
    if points_cam.device.type == "cpu":
        return torch.cat([_grid_to_image(chunk) for chunk in points_cam.split(maps_per_cloud)])
    return _grid_to_image(points_cam)


def _grid_to_image(points_cam: torch.Tensor) -> torch.Tensor:
    grid = _points_to_grid(points_cam)
    num_maps, depth, size, _ = grid.shape
    pooled = size + 2 * _MAXPOOL_PADDING - _MAXPOOL_SIZE + 1

    # Densify: the reference's 7x7 max-pool (stride 1, padding 2) as two exact 1-D pools, first along x, then,
    # after the reference's permute to rows = x, along y. Much faster on CPU than a 2-D pool.
    images = F.max_pool1d(grid.view(-1, 1, size), _MAXPOOL_SIZE, stride=1, padding=_MAXPOOL_PADDING)
    images = images.view(num_maps, depth, size, pooled).transpose(-1, -2).contiguous()
    images = F.max_pool1d(images.view(-1, 1, size), _MAXPOOL_SIZE, stride=1, padding=_MAXPOOL_PADDING)
    images = images.view(num_maps, depth, pooled, pooled)

    # Smooth each depth slice (a grouped conv in channels-last layout is the fast CPU path), then squeeze depth.
    kernel = _gaussian_kernel(points_cam.device, points_cam.dtype).expand(depth, 1, -1, -1)
    images = images.contiguous(memory_format=torch.channels_last)
    images = F.conv2d(images, kernel, padding=_GAUSSIAN_SIZE // 2, groups=depth).amax(dim=1)

    peak = images.amax(dim=(-2, -1), keepdim=True)
    return 1 - images / peak.clamp_min(torch.finfo(images.dtype).tiny)


def _points_to_grid(points_cam: torch.Tensor) -> torch.Tensor:
    """Orthographic voxelisation `[M, N, 3]` -> `[M, depth, y, x]` holding the max depth coordinate per voxel."""
    num_maps = points_cam.shape[0]
    size, depth = _GRID_RESOLUTION, _GRID_DEPTH

    upper, lower = points_cam.amax(dim=1, keepdim=True), points_cam.amin(dim=1, keepdim=True)
    center = (upper + lower) / 2
    extent = (upper - lower).amax(dim=-1, keepdim=True)
    extent = torch.where(extent > 0, extent, 1.0)  # all points coincide: avoid 0 / 0
    points = (points_cam - center) / extent * 2
    x, y, z = points.unbind(-1)
    x, y = x * _OBJ_RATIO, y * _OBJ_RATIO

    x_index = torch.ceil((x + 1) / 2 * size).clamp(1, size - 2)
    y_index = torch.ceil((y + 1) / 2 * size).clamp(1, size - 2)
    z = ((z + 1) / 2 + _DEPTH_BIAS) / (1 + _DEPTH_BIAS) * (depth - 2)
    # The index uses the unclipped ceil of the depth coordinate (in [1, 7]), the value the clipped coordinate.
    z_index = torch.ceil(z).clamp(0, depth - 1)
    value = z.clamp(1, depth - 2)

    map_offset = torch.arange(num_maps, device=points_cam.device).unsqueeze(1) * (depth * size * size)
    voxel = map_offset + (z_index.long() * size + y_index.long()) * size + x_index.long()
    grid = points_cam.new_zeros(num_maps * depth * size * size)
    grid.scatter_reduce_(0, voxel.flatten(), value.flatten(), reduce="amax", include_self=True)
    return grid.view(num_maps, depth, size, size)


@functools.cache
@torch.inference_mode(False)
def _gaussian_kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalised `[1, 1, 3, 3]` Gaussian, sigma 3 (V2's smoothing conv), built in float32 like the reference."""
    offsets = torch.arange(_GAUSSIAN_SIZE, dtype=torch.float32) - _GAUSSIAN_SIZE // 2
    kernel_1d = torch.exp(-(offsets**2) / (2 * _GAUSSIAN_SIGMA**2))
    kernel = torch.outer(kernel_1d, kernel_1d)
    return (kernel / kernel.sum()).view(1, 1, _GAUSSIAN_SIZE, _GAUSSIAN_SIZE).to(device=device, dtype=dtype)
