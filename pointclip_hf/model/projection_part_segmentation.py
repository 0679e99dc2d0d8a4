"""PointCLIP V2's part-segmentation projection: denser depth views, and where each point lands in them.

The style `"pointclip_v2_part_segmentation"` (the reference `zeroshot_seg/realistic_projection.py`, params `vit_b16`):

- 10 views: 4 around the up axis tilted down by pi/4 and sideways by pi/9, the same 4 without the pi/4 tilt, top and
  bottom (tilts pi/15), each normalised to its bounding box as in `"pointclip_v2"`;
- an orthographic voxel grid of 224 x 224 x 112 holding the depth coordinate, max-pooled (5, 11, 11) and smoothed by
  a normalised 5x5x5 Gaussian (sigma 1 across, 2 along the depth), then the max over depth, divided by the image's
  maximum and inverted: 224 x 224 images in [0, 1] with a white (1) background;
- per point and view, its pixel and whether it is visible: the smoothed grid at the point's voxel is within 0.1 of the
  image at its pixel (both after the normalisation);
- for CLIP, the crop `[20:204]` resized bilinearly (`align_corners=True`) to the CLIP image size, the pixels mapped
  with the reference's `ceil((pixel - 20) * size / 184)`.

The image rows are the view's x axis and the columns its y axis. The reference reads a point's pixel at
(row = y, col = x), the transposed location, in its visibility test and in the segmentation head; `render_part_views`
reads (row = x, col = y) unless `transposed_lookup=True`, which exists to reproduce the reference's outputs.

Deviations from the reference, none of which changes a result on valid input: the grid keeps the largest depth
written to a voxel (the reference's `index_put` keeps the last write on CPU and an arbitrary one on GPU); the
max-pool and the Gaussian run as exact separable 1-D passes over the only part of the grid the points can
reach; a view whose points all coincide is rendered as a dot instead of dividing by zero.
"""

import functools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .cpu_threads import map_on_cpu_threads, num_worker_threads
from .projection import check_point_batch, euler_to_rotation

NUM_VIEWS = 10
RESOLUTION = 224
CROP = (20, 204)

_PI = math.pi
_SIDE_VIEWS = tuple((k * _PI / 2, 0.0, _PI / 2) for k in range(4))
_VIEW_ANGLES = _SIDE_VIEWS * 2 + ((0.0, -_PI / 2, _PI / 2), (0.0, _PI / 2, _PI / 2))
_X_TILTS = ((_PI / 4, 0.0, 0.0),) * 4 + ((0.0, 0.0, 0.0),) * 4 + ((_PI / 15, 0.0, 0.0),) * 2
_Y_TILTS = ((0.0, _PI / 9, 0.0),) * 8 + ((0.0, _PI / 15, 0.0),) * 2
_TRANSLATION = (-0.5, -0.5, -1.5)

_DEPTH = 112
_OBJ_RATIO = 0.7
_DEPTH_BIAS = 0.3
_POOL_SIZE = (5, 11, 11)
_GAUSSIAN_SIZE = 5
_GAUSSIAN_SIGMA = (2.0, 1.0, 1.0)  # depth, rows, columns
_SEEN_TOLERANCE = 0.1


class PartViews(NamedTuple):
    r"""
    The views of a cloud for part segmentation.

    Args:
        images (`torch.Tensor` of shape `(batch, views, size, size)`):
            Depth images, white (1) background.
        pixels (`torch.ShortTensor` of shape `(batch, views, points, 2)`):
            The (row, column) of `images` each point is read at; int16, a quarter of int64's memory (1M points: 38
            MiB), ample for any image side CLIP uses.
        visible (`torch.BoolTensor` of shape `(batch, views, points)`):
            Whether the point is on the surface the view shows.
    """

    images: torch.Tensor
    pixels: torch.Tensor
    visible: torch.Tensor


def render_part_views(points: torch.Tensor, image_size: int = 224, transposed_lookup: bool = False) -> PartViews:
    r"""
    Render clouds for part segmentation: the CLIP input images and each point's pixel and visibility in them. On the
    CPU the clouds are rendered in groups, one per worker thread (`pointclip_hf.model.cpu_threads`).

    Args:
        points (`torch.Tensor` of shape `(batch, points, 3)`):
            Floating-point clouds, y-up, roughly in the unit sphere.
        image_size (`int`, *optional*, defaults to 224):
            CLIP's input size: the crop `[20:204]` is resized to it.
        transposed_lookup (`bool`, *optional*, defaults to `False`):
            Read each point at the reference's transposed pixel (row = y, col = x), for parity with the reference;
            the default reads the point's own pixel.

    Returns:
        [`PartViews`] with `images` of shape `(batch, 10, image_size, image_size)` and pixels in those images.
    """
    return _render(points, transposed_lookup, image_size=image_size)


def render_part_images(points: torch.Tensor, image_size: int = 224) -> torch.Tensor:
    r"""
    The `images` of [`render_part_views`] alone, `(batch, 10, image_size, image_size)`: without the per-point
    lookups, whose memory grows with the number of points.
    """
    return _render(points, False, lookups=False, image_size=image_size).images


def crop_for_clip(views: PartViews, image_size: int = 224) -> PartViews:
    r"""
    The reference's CLIP input: the crop `[20:204]` of the 224 x 224 views, resized bilinearly (`align_corners=True`)
    to `image_size`, each pixel mapped to `ceil((pixel - 20) * image_size / 184)`.

    Args:
        views ([`PartViews`]):
            From [`render_part_depth`].
        image_size (`int`, *optional*, defaults to 224):
            CLIP's input size.

    Returns:
        [`PartViews`] with `images` of shape `(batch, 10, image_size, image_size)`.
    """
    batch, num_views = views.images.shape[:2]
    top, bottom = CROP
    cropped = views.images[:, :, top:bottom, top:bottom].reshape(batch * num_views, 1, bottom - top, bottom - top)
    images = F.interpolate(cropped, size=(image_size, image_size), mode="bilinear", align_corners=True)
    pixels = views.pixels
    if pixels is not None:
        scaled = torch.ceil((pixels.int() - top) * image_size / (bottom - top))
        pixels = scaled.clamp(0, image_size - 1).to(pixels.dtype)
    return PartViews(images.view(batch, num_views, image_size, image_size), pixels, views.visible)


def render_part_depth(points: torch.Tensor, transposed_lookup: bool = False) -> PartViews:
    r"""
    The 224 x 224 depth images of the part-segmentation style, before the crop, with each point's pixel and visibility.

    Args:
        points (`torch.Tensor` of shape `(batch, points, 3)`):
            Floating-point clouds.
        transposed_lookup (`bool`, *optional*, defaults to `False`):
            Read the reference's transposed pixel (see [`render_part_views`]).

    Returns:
        [`PartViews`] with `images` of shape `(batch, 10, 224, 224)` in the dtype of `points` (float32 for half inputs).
    """
    return _render(points, transposed_lookup)


def _render(
    points: torch.Tensor, transposed_lookup: bool, lookups: bool = True, image_size: int | None = None
) -> PartViews:
    """[`render_part_depth`] (then [`crop_for_clip`] to `image_size` if given); without `lookups`, `pixels` and
    `visible` are `None`. On the CPU a few views of a cloud go at a time (see `_view_chunks`), the chunks shared out
    among the worker threads (`pointclip_hf.model.cpu_threads`), so that even one cloud uses them all."""
    if not isinstance(points, torch.Tensor) or points.ndim != 3:
        check_point_batch(points)
    batch, num_points, _ = points.shape
    chunks = _view_chunks(points)
    workers = 1 if num_points > _CPU_POINTS_FOR_TWO_VIEWS else num_worker_threads(points.device)
    per_worker = -(-len(chunks) // workers)
    groups = [chunks[start : start + per_worker] for start in range(0, len(chunks), per_worker)]
    out = _empty_views(points, lookups, image_size or RESOLUTION)

    def render_group(group: list[tuple[slice, slice]]) -> None:
        for clouds, views in group:
            chunk = _render_chunk(points[clouds], views, transposed_lookup, lookups)
            chunk = chunk if image_size is None else crop_for_clip(chunk, image_size)
            rows = slice(clouds.start * NUM_VIEWS + views.start, (clouds.stop - 1) * NUM_VIEWS + views.stop)
            for field, part in zip(out, chunk):
                if field is not None:
                    field[rows] = part.view(-1, *field.shape[1:])

    map_on_cpu_threads(render_group, groups, points.device)
    images, pixels, visible = out
    images = images.view(batch, NUM_VIEWS, *images.shape[-2:])
    if lookups:
        pixels, visible = pixels.view(batch, NUM_VIEWS, num_points, 2), visible.view(batch, NUM_VIEWS, num_points)
    return PartViews(images, pixels, visible)


def _empty_views(points: torch.Tensor, lookups: bool, size: int) -> PartViews:
    """The outputs every chunk writes its rows of: images `[B * 10, size, size]` and, with `lookups`, pixels
    `[B * 10, N, 2]` and visibility `[B * 10, N]`; so that the views are never held twice."""
    batch, num_points, _ = points.shape
    dtype = torch.float32 if points.dtype in (torch.float16, torch.bfloat16) else points.dtype
    images = torch.empty(batch * NUM_VIEWS, size, size, dtype=dtype, device=points.device)
    if not lookups:
        return PartViews(images, None, None)
    pixels = torch.empty(batch * NUM_VIEWS, num_points, 2, dtype=torch.int16, device=points.device)
    return PartViews(images, pixels, torch.empty(batch * NUM_VIEWS, num_points, dtype=torch.bool, device=points.device))


# Views rendered at once on the CPU: 2 of a cloud (their grids stay in cache), 1 for clouds of over 2^17 points (the
# memory of a view's frames, voxels and sort grows with the points), on one worker: two at once doubled the memory
# (1M points: 106 -> 239 MiB) and were slower on 2 shared cores (5.23 -> 5.71 s), the work being memory-bound.
_CPU_VIEWS_PER_CHUNK = 2
_CPU_POINTS_FOR_TWO_VIEWS = 1 << 17


def _view_chunks(points: torch.Tensor) -> list[tuple[slice, slice]]:
    """(clouds, views) rendered at once, in cloud-major order: all of them off the CPU, else views of one cloud (so
    that each chunk's views are consecutive rows of `_empty_views`)."""
    batch, num_points, _ = points.shape
    if points.device.type != "cpu":
        return [(slice(0, batch), slice(0, NUM_VIEWS))]
    step = _CPU_VIEWS_PER_CHUNK if num_points <= _CPU_POINTS_FOR_TWO_VIEWS else 1
    return [(slice(cloud, cloud + 1), slice(view, view + step)) for cloud in range(batch)
            for view in range(0, NUM_VIEWS, step)]  # fmt: skip


def _render_chunk(points: torch.Tensor, views: slice, transposed_lookup: bool, lookups: bool) -> PartViews:
    """`views` of checked clouds: images `[1, M, 224, 224]` and, with `lookups`, pixels `[M, N, 2]` and visibility
    `[M, N]`, for the `M` views of the clouds in cloud-major order."""
    check_point_batch(points)
    points = points.float() if points.dtype in (torch.float16, torch.bfloat16) else points
    cam = _to_view_frames(points, views).flatten(0, 1)
    images, pixels, visible = _smooth_and_look_up(_voxelize(cam), transposed_lookup, lookups)
    return PartViews(images[None], pixels, visible)


def _to_view_frames(points: torch.Tensor, views: slice = slice(None)) -> torch.Tensor:
    """`[B, N, 3]` -> `[B, V, N, 3]`: `p @ R1 @ R2 @ R3 - T` for the `views`, in the reference's order of products."""
    rotation, x_tilt, y_tilt, translation = _view_transforms(points.device, points.dtype)
    return ((points.unsqueeze(1) @ rotation[views]) @ x_tilt[views]) @ y_tilt[views] - translation


@functools.cache
@torch.inference_mode(False)
def _view_transforms(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The three per-view `R.T` `[V, 3, 3]` and the translation `[3]`, built in float32 like the reference."""
    matrices = [
        euler_to_rotation(torch.tensor(angles, dtype=torch.float32)).transpose(1, 2).to(device=device, dtype=dtype)
        for angles in (_VIEW_ANGLES, _X_TILTS, _Y_TILTS)
    ]
    return (*matrices, torch.tensor(_TRANSLATION, dtype=dtype, device=device))


class _Voxels(NamedTuple):
    """Per map and point: voxel indices (depth, row = x, col = y) and the depth value written there."""

    depth_index: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    value: torch.Tensor


def _voxelize(points_cam: torch.Tensor) -> _Voxels:
    """The reference's `points2grid` coordinates for `[M, N, 3]` view-frame points."""
    upper, lower = points_cam.amax(dim=1, keepdim=True), points_cam.amin(dim=1, keepdim=True)
    center = (upper + lower) / 2
    extent = (upper - lower).amax(dim=-1, keepdim=True)
    extent = torch.where(extent > 0, extent, 1.0)
    x, y, z = ((points_cam - center) / extent * 2).unbind(-1)
    x, y = x * _OBJ_RATIO, y * _OBJ_RATIO
    row = torch.ceil((x + 1) / 2 * RESOLUTION).clamp(1, RESOLUTION - 2)
    col = torch.ceil((y + 1) / 2 * RESOLUTION).clamp(1, RESOLUTION - 2)
    z = ((z + 1) / 2 + _DEPTH_BIAS) / (1 + _DEPTH_BIAS) * (_DEPTH - 2)
    depth_index = torch.ceil(z).clamp(0, _DEPTH - 1)
    return _Voxels(depth_index.long(), row.long(), col.long(), z.clamp(1, _DEPTH - 2))


class _Box(NamedTuple):
    """The part of the grid a chunk of maps can make non-zero: `[start, stop)` in depth and in rows/columns."""

    depth: tuple[int, int]
    side: tuple[int, int]


def _occupied_box(voxels: _Voxels) -> _Box:
    """The voxels' bounding box widened by what pooling and smoothing reach (2 + 2 in depth, 5 + 2 across). The smoothed
    grid is exactly 0 outside it, and every value inside is computed from the same neighbours in the same order
    whatever the box, so results do not depend on which maps share a chunk."""
    lowest, highest = voxels.depth_index.min().item(), voxels.depth_index.max().item()
    side_low = min(voxels.row.min().item(), voxels.col.min().item())
    side_high = max(voxels.row.max().item(), voxels.col.max().item())
    return _Box((max(lowest - 4, 0), min(highest + 5, _DEPTH)), (max(side_low - 7, 0), min(side_high + 8, RESOLUTION)))


def _smooth_and_look_up(voxels: _Voxels, transposed_lookup: bool, lookups: bool = True) -> tuple:
    """Grid -> pooled, smoothed grid -> images `[M, 224, 224]` and, with `lookups`, pixels `[M, N, 2]` and visibility
    `[M, N]` (else `None`)."""
    box = _occupied_box(voxels)
    smoothed = _gaussian_smooth(_max_pool(_fill_grid(voxels, box)))
    num_maps = smoothed.shape[0]
    surface = smoothed.amax(dim=1)
    peak = surface.flatten(1).amax(dim=1).clamp_min(torch.finfo(surface.dtype).tiny)[:, None, None]
    images = smoothed.new_ones(num_maps, RESOLUTION, RESOLUTION)
    (top, bottom), (lo, _) = box.side, box.depth
    images[:, top:bottom, top:bottom] = 1 - surface / peak
    if not lookups:
        return images, None, None

    rows, cols = (voxels.col, voxels.row) if transposed_lookup else (voxels.row, voxels.col)
    maps = torch.arange(num_maps, device=smoothed.device)[:, None]
    depth = voxels.depth_index.clamp(1, _DEPTH - 3) - lo
    point_value = 1 - smoothed[maps, depth, rows - top, cols - top] / peak[:, :, 0]
    visible = (images[maps, rows, cols] - point_value).abs() < _SEEN_TOLERANCE
    return images, torch.stack([rows, cols], dim=-1), visible


def _fill_grid(voxels: _Voxels, box: _Box) -> torch.Tensor:
    """The `box` of the voxel grid `[M, depth, rows, cols]`; a voxel hit by several points holds the last one's depth,
    as the reference's `index_put` does on CPU, but on every device."""
    num_maps = voxels.row.shape[0]
    (top, bottom), (lo, hi) = box.side, box.depth
    side, depth = bottom - top, hi - lo
    offset = torch.arange(num_maps, device=voxels.row.device)[:, None] * (depth * side * side)
    index = offset + ((voxels.depth_index - lo) * side + voxels.row - top) * side + voxels.col - top
    sorted_index, order = index.flatten().sort(stable=True)
    is_last = torch.ones_like(sorted_index, dtype=torch.bool)
    is_last[:-1] = sorted_index[1:] != sorted_index[:-1]
    grid = voxels.value.new_zeros(num_maps * depth * side * side)
    grid[sorted_index[is_last]] = voxels.value.flatten()[order[is_last]]
    return grid.view(num_maps, depth, side, side)


def _max_pool(grid: torch.Tensor) -> torch.Tensor:
    """The reference's `MaxPool3d((5, 11, 11), stride 1, size-preserving padding)`, one axis at a time. The grid is
    non-negative and 0 around the box, so zero padding gives the same maxima as the reference's implicit -inf."""
    for axis, size in zip((1, 2, 3), _POOL_SIZE):
        grid = _window_max(F.pad(grid, _axis_padding(axis, size // 2)), axis, size)
    return grid


def _window_max(padded: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """Running maximum over `size` consecutive entries along `axis` (stride 1, no padding), by doubling windows."""
    length = padded.shape[axis] - size + 1
    widest, width = padded, 1
    while 2 * width <= size:
        span = widest.shape[axis] - width
        widest = torch.maximum(widest.narrow(axis, 0, span), widest.narrow(axis, width, span))
        width *= 2
    rest = size - width
    result = widest.narrow(axis, 0, length)
    if rest:
        result = torch.maximum(result, widest.narrow(axis, rest, length))
    return result


def _gaussian_smooth(grid: torch.Tensor) -> torch.Tensor:
    """The reference's normalised 5x5x5 Gaussian `Conv3d` (zero padding 2, one channel: its 3 are equal), as the
    product of three 1-D Gaussians applied one axis at a time."""
    radius = _GAUSSIAN_SIZE // 2
    for axis, sigma in zip((1, 2, 3), _GAUSSIAN_SIGMA):
        padded = F.pad(grid, _axis_padding(axis, radius))
        length = grid.shape[axis]
        taps = _gaussian_taps(sigma)
        grid = padded.narrow(axis, 0, length) * taps[0]
        for shift in range(1, _GAUSSIAN_SIZE):
            grid.add_(padded.narrow(axis, shift, length), alpha=taps[shift])
    return grid


def _axis_padding(axis: int, amount: int) -> tuple[int, ...]:
    """`F.pad` widths that pad `amount` on both sides of `axis` of a 4-D tensor."""
    return (0, 0) * (3 - axis) + (amount, amount)


@functools.cache
def _gaussian_taps(sigma: float) -> tuple[float, ...]:
    """Normalised 5-tap Gaussian weights (float32 values); the reference's 3-D kernel is the product of three."""
    offsets = torch.arange(_GAUSSIAN_SIZE, dtype=torch.float32) - _GAUSSIAN_SIZE // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return tuple((kernel / kernel.sum()).tolist())
