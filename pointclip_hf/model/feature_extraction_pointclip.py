"""The feature extractor: point clouds in any form -> the multi-view depth images CLIP's image tower reads; with the
batched point operations it runs first (turning a cloud y up, unit-sphere normalisation, point sampling: first,
seeded random, farthest-point)."""

import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BatchFeature, FeatureExtractionMixin
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from .choices import DEFAULT_SAMPLING, SAMPLING_METHODS, UP_AXES
from .cpu_threads import cat_on_cpu_threads, num_worker_threads
from .projection import get_projection_style, render_views

MAX_NUM_POINTS = 1_000_000
MAX_IMAGE_SIZE = 1024
# The up axis a file format prescribes (LAS: z up, geographic; glTF 2.0: +y up); other formats say nothing (y assumed).
FILE_FORMAT_UP_AXES = {".las": "z", ".laz": "z", ".glb": "y", ".gltf": "y"}

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


def file_up_axis(path) -> str:
    """The up axis of a point-cloud file by its format's convention (`FILE_FORMAT_UP_AXES`), else `"y"`."""
    return FILE_FORMAT_UP_AXES.get(os.path.splitext(os.fspath(path))[1].lower(), "y")


def read_point_cloud_file(path) -> np.ndarray:
    """Read a point-cloud file with the installed `pointclip_hf` readers (they are not part of a Hub repo's code)."""
    try:
        from pointclip_hf.io import load_point_cloud
    except ImportError:
        raise ImportError(f"Reading {path} needs the pointclip_hf package: pip install pointclip_hf.") from None
    return load_point_cloud(path)


def _as_cloud_tensor(cloud, index: int, up_axis: str | None) -> torch.Tensor:
    """One cloud (array, tensor, nested list or file path) -> float tensor `[N, 3]`, checked, turned y up (`up_axis`,
    else a file's convention, else y)."""
    if isinstance(cloud, (str, os.PathLike)):
        up_axis = up_axis or file_up_axis(cloud)
        cloud = read_point_cloud_file(cloud)
    if not isinstance(cloud, torch.Tensor):
        cloud = _array_to_tensor(cloud, f"Point cloud {index}")
    _check_coordinates(cloud, f"Point cloud {index}")
    return turn_y_up(cloud[:, :3], up_axis or "y")


def _check_coordinates(points: torch.Tensor, name: str, batch: bool = False) -> None:
    """Raise a `TypeError` unless the cloud `[N, C]` (or, with `batch`, the clouds `[B, N, C]`) `points` has
    floating-point coordinates, and a `ValueError` naming the first problem with its shape."""
    has = "have" if batch else "has"
    if not points.is_floating_point():
        raise TypeError(f"{name} {has} dtype {points.dtype}; coordinates must be floating point.")
    problem = next((message for failed, message in _shape_checks(points, name, has, batch) if failed), None)
    if problem:
        raise ValueError(problem)


def _shape_checks(points: torch.Tensor, name: str, has: str, batch: bool):
    """(failed, message) of each shape check of `_check_coordinates`, in order: each is evaluated only when those
    before it passed."""
    shape = tuple(points.shape)
    expected = "[N, 3] or [B, N, 3]" if batch else "[N, 3] (or [N, C>3])"
    yield points.ndim != 2 + batch, f"{name} {has} shape {shape}; expected {expected}."
    yield shape[-1] < 3, f"{name} {has} {shape[-1]} channels per point; at least 3 (x, y, z) needed."
    yield 0 in shape, f"Point cloud batch of shape {shape} is empty." if batch else f"{name} is empty (0 points)."


def _array_to_tensor(values, name: str) -> torch.Tensor:
    """An array-like as a tensor, whatever its byte order and strides (`cloud[::-1]`, big-endian files)."""
    try:
        array = np.asarray(values)
    except ValueError:
        message = f"{name} is ragged (nested lists of different lengths); give a numeric [N, 3] array."
        raise ValueError(message) from None
    if array.dtype == object:
        raise TypeError(f"{name} has object dtype (ragged nested lists?); give a numeric [N, 3] array.")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return torch.from_numpy(np.ascontiguousarray(array))


def is_single_point_cloud(point_clouds) -> bool:
    """Whether `point_clouds` is one cloud (a path, an `[N, C]` array or tensor, a list of points) or a batch."""
    if isinstance(point_clouds, (str, os.PathLike)):
        return True
    if isinstance(point_clouds, (torch.Tensor, np.ndarray)):
        return point_clouds.ndim <= 2
    if isinstance(point_clouds, (list, tuple)) and point_clouds:
        first = point_clouds[0]
        if isinstance(first, (list, tuple)):
            return not first or not isinstance(first[0], (list, tuple, np.ndarray, torch.Tensor))
        return first is not None and not isinstance(first, (torch.Tensor, np.ndarray, str, os.PathLike))
    return False


def check_no_missing_clouds(point_clouds) -> None:
    """Raise unless the batch `point_clouds` (a list or tuple of clouds, or a `[B, N, C]` array or tensor) is non-empty
    and holds no `None`."""
    is_array = isinstance(point_clouds, (np.ndarray, torch.Tensor))
    if len(point_clouds) == 0:
        given = f"a batch of shape {tuple(point_clouds.shape)}" if is_array else "empty list"
        raise ValueError(f"No point clouds given ({given}).")
    missing = [] if is_array else [index for index, cloud in enumerate(point_clouds) if cloud is None]
    if missing:
        raise TypeError(f"Point cloud {missing[0]} is None; give an [N, 3] array, tensor or file path.")


def to_point_batch(point_clouds, up_axis: str | None = None) -> torch.Tensor | list[torch.Tensor]:
    """
    Accept one cloud `[N, C]` or a batch (`[B, N, C]`, or a list of clouds of any sizes) as numpy arrays, tensors,
    nested lists or file paths. Extra channels beyond x, y, z (normals, colours) are dropped, and each cloud is turned
    so that its up axis (`up_axis`; when `None`, a file's format convention (`file_up_axis`), else y) points along +y.
    Returns a `[B, N, 3]` tensor when the clouds share one size, else a list of `[N_i, 3]` tensors.
    """
    if isinstance(point_clouds, (torch.Tensor, np.ndarray)) and point_clouds.ndim >= 3:
        batch = point_clouds
        if not isinstance(batch, torch.Tensor):
            batch = _array_to_tensor(batch, "Point clouds")
        _check_coordinates(batch, "Point clouds", batch=True)
        return turn_y_up(batch[..., :3], up_axis or "y")
    if not isinstance(point_clouds, (list, tuple, str, os.PathLike, torch.Tensor, np.ndarray)):
        raise TypeError(f"Cannot read point clouds from a {type(point_clouds).__name__}.")
    if is_single_point_cloud(point_clouds):
        point_clouds = [point_clouds]
    else:
        check_no_missing_clouds(point_clouds)
    clouds = [_as_cloud_tensor(cloud, index, up_axis) for index, cloud in enumerate(point_clouds)]
    if len({cloud.shape[0] for cloud in clouds}) == 1 and len({cloud.dtype for cloud in clouds}) == 1:
        return torch.stack(clouds)
    return clouds


class PointCLIPFeatureExtractor(FeatureExtractionMixin):
    r"""
    Turns point clouds into the multi-view images CLIP's image tower reads.

    Steps: drop channels beyond x, y, z; turn each cloud y up; optionally centre and scale each cloud to the unit
    sphere; pick `num_points` points; render the views of `projection_style` (`pointclip_hf.render_views`); resize
    them bilinearly (`align_corners=True`) to `image_size`; repeat to 3 channels; optionally apply CLIP's mean/std
    (off by default, as the reference feeds raw depths).

    Args:
        projection_style (`str`, *optional*, defaults to `"pointclip_v1"`):
            `"pointclip_v1"`, `"pointclip_v1_fewshot"` or `"pointclip_v2"`.
        num_points (`int`, *optional*, defaults to 1024):
            Points kept per cloud (1024 in the reference), at most `MAX_NUM_POINTS` (1,000,000).
        sampling (`str`, *optional*, defaults to `"random"`):
            How they are picked: `"random"` (a seeded pseudo-random subset that depends only on the set of points,
            not on the order a file stores them in), `"fps"` (farthest-point sampling from the first stored point:
            even spacing, but slow on large clouds and drawn to outliers) or `"first"` (the reference: the first
            stored points, right only for clouds stored in random order, as ModelNet's are). Saved configurations
            record it, so those saved when `"first"` was the default keep it.
        normalize (`bool`, *optional*, defaults to `True`):
            Centre on the mean and scale the farthest point to radius 1 (the reference data were already).
        image_size (`int`, *optional*, defaults to 224):
            CLIP's input size `S`, at most `MAX_IMAGE_SIZE` (1024).
        clip_normalize (`bool`, *optional*, defaults to `False`):
            Apply CLIP's image mean/std to the depth images.
        image_mean (`list[float]`, *optional*):
            The mean of `clip_normalize`, defaults to CLIP's.
        image_std (`list[float]`, *optional*):
            The standard deviation of `clip_normalize`, defaults to CLIP's.
        seed (`int`, *optional*, defaults to 0):
            Seed of the `"random"` sampling.
        up_axis (`str`, *optional*):
            The axis that points up in the input clouds, one of `"y"`, `"z"`, `"x"`, `"-y"`, `"-z"`, `"-x"`: it is
            turned to +y, the up axis the projections (and ModelNet) use. `None` (the default) takes a file's format
            convention (`.las`/`.laz`: z up; `.glb`/`.gltf`: y up) and y for arrays and all other files.
    """

    _auto_class = "AutoFeatureExtractor"  # save_pretrained writes it into the auto_map

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        projection_style: str = "pointclip_v1",
        num_points: int = 1024,
        sampling: str = DEFAULT_SAMPLING,
        normalize: bool = True,
        image_size: int = 224,
        clip_normalize: bool = False,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        seed: int = 0,
        up_axis: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        get_projection_style(projection_style)
        check_sampling(sampling)
        check_up_axis(up_axis)
        for name, value, most, why in (("num_points", num_points, MAX_NUM_POINTS, " (every cloud is sampled to it)"),
                                       ("image_size", image_size, MAX_IMAGE_SIZE, "")):  # fmt: skip
            if not 1 <= value <= most:
                raise ValueError(f"{name} must be positive and at most {most}{why}, got {value}.")
        self.projection_style = projection_style
        self.num_points = num_points
        self.sampling = sampling
        self.normalize = normalize
        self.image_size = image_size
        self.clip_normalize = clip_normalize
        self.image_mean = list(image_mean or OPENAI_CLIP_MEAN)
        self.image_std = list(image_std or OPENAI_CLIP_STD)
        self.seed = seed
        self.up_axis = up_axis

    @property
    def num_views(self) -> int:
        return get_projection_style(self.projection_style).num_views

    def prepare_points(self, point_clouds, device: torch.device | str | None = None, names=None) -> torch.Tensor:
        """
        Clouds in any accepted form -> turned y up, checked (`check_point_clouds`), normalised and sampled, each cloud
        on its own (on a single-threaded CPU worker, see `cpu_threads`), so that its points never depend on the batch
        or the thread count.

        Args:
            point_clouds: one cloud `[N, C]` or a batch, as numpy arrays, tensors, nested lists or file paths.
            device: where to compute; defaults to the input tensor's device.
            names (`Sequence[str]`, *optional*): how error messages name each cloud (default `"Point cloud {i}"`).

        Returns:
            `torch.Tensor` of shape `(batch, num_points, 3)`, float32.
        """
        batch = to_point_batch(point_clouds, self.up_axis)
        clouds = list(batch.split(1)) if isinstance(batch, torch.Tensor) else [cloud[None] for cloud in batch]
        names = list(names) if names is not None else [f"Point cloud {i}" for i in range(len(clouds))]
        clouds = [cloud.to(device=device if device is not None else cloud.device) for cloud in clouds]
        return cat_on_cpu_threads(lambda item: self._prepare_cloud(*item), zip(clouds, names), clouds[0].device)

    def _prepare_cloud(self, cloud: torch.Tensor, name: str) -> torch.Tensor:
        check_point_clouds(cloud, self.normalize, [name])
        cloud = cloud if cloud.dtype in (torch.float32, torch.float64) else cloud.float()
        if self.sampling == "fps":
            warn_if_slow_farthest_point_sampling(cloud.shape[1], self.num_points)
        indices = sample_indices(cloud, self.num_points, self.sampling, self.seed)
        if self.normalize:
            cloud = normalize_to_unit_sphere(cloud)
        return gather_points(cloud, indices).float()

    def render(self, points: torch.Tensor, names=None) -> torch.Tensor:
        """Prepared clouds `[B, N, 3]` -> CLIP pixel values `[B, V, 3, S, S]` (the 3 channels an expanded view of
        one), rendered in groups of clouds on the CPU workers; a cloud rendered blank in every view raises a
        `ValueError` that names it (`names[i]`, default `"Point cloud {i}"`)."""
        names = list(names) if names is not None else [f"Point cloud {i}" for i in range(len(points))]
        group = max(1, -(-len(points) // num_worker_threads(points.device)))
        groups = zip(points.split(group), (names[start : start + group] for start in range(0, len(points), group)))
        images = cat_on_cpu_threads(lambda item: self._render_group(*item), groups, points.device)
        return images.expand(-1, -1, 3, -1, -1)

    def _render_group(self, points: torch.Tensor, names: list[str]) -> torch.Tensor:
        views = render_views(points, self.projection_style)
        check_rendered_views(views, get_projection_style(self.projection_style).background, names)
        batch, num_views, height, width = views.shape
        images = views.reshape(batch * num_views, 1, height, width)
        if (height, width) != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=True)
        if self.clip_normalize:
            images = images.expand(-1, 3, -1, -1)
            mean = torch.tensor(self.image_mean, dtype=images.dtype, device=images.device)[:, None, None]
            std = torch.tensor(self.image_std, dtype=images.dtype, device=images.device)[:, None, None]
            images = (images - mean) / std
        return images.reshape(batch, num_views, -1, self.image_size, self.image_size)

    def __call__(self, point_clouds, return_tensors: str | None = "pt", device=None, **kwargs) -> BatchFeature:
        """
        Args:
            point_clouds: one cloud `[N, C]` or a batch, as numpy arrays, tensors, nested lists or file paths.
            return_tensors: `"pt"` (default) or `"np"`.
            device: where to compute; defaults to the input tensor's device.

        Returns:
            `BatchFeature` with `pixel_values` `[B, V, 3, S, S]`.
        """
        _check_choice(return_tensors, (None, "pt", "np"), "return_tensors")
        pixel_values = self.render(self.prepare_points(point_clouds, device=device))
        if return_tensors == "np":
            pixel_values = pixel_values.cpu().numpy()
        return BatchFeature({"pixel_values": pixel_values})


# Beyond this magnitude a float32 squared norm overflows (sqrt(3.4e38 / 3) is about 1e19): no real scan is that large.
MAX_COORDINATE = 1e18
# Extent, in rounding steps of the cloud's own dtype at its largest coordinate, up to which a cloud is one point.
DEGENERATE_STEPS = 64


class PointCloudProcessor(PointCLIPFeatureExtractor):
    """
    The name [`PointCLIPFeatureExtractor`] had before: folders saved then record it as their `feature_extractor_type`,
    the name `AutoFeatureExtractor` looks up. Registered under that name only, it loads them as a
    [`PointCLIPFeatureExtractor`]. Not exported.
    """

    @classmethod
    def from_dict(cls, feature_extractor_dict: dict, **kwargs) -> PointCLIPFeatureExtractor:
        return PointCLIPFeatureExtractor.from_dict(feature_extractor_dict, **kwargs)


def check_point_clouds(points: torch.Tensor, normalize: bool, names: Sequence[str] | None = None) -> None:
    r"""
    Raise a `ValueError` naming the first unusable cloud of a batch: a cloud with NaN or infinite coordinates, with
    coordinates so large that its norms overflow, or (when it is to be scaled to the unit sphere) a degenerate one
    whose points coincide up to rounding relative to its own scale and precision (all at 12345.678, say; a float64
    cloud resolves 2**29 times finer than a float32 one, so a 2 m object at UTM coordinates is not degenerate).

    Args:
        points (`torch.Tensor` of shape `(batch, points, 3)`):
            Floating-point clouds, in their own dtype.
        normalize (`bool`):
            Whether the clouds will be scaled to the unit sphere (degenerate clouds then cannot be).
        names (`Sequence[str]`, *optional*):
            How the messages name each cloud (a file, a dataset row); by default `"Point cloud {index}"`.
    """
    if points.shape[1] == 0:
        raise ValueError(f"{_name(names, 0)} is empty (0 points).")
    finite = torch.isfinite(points).flatten(1).all(dim=1)
    _raise_for_first(~finite, names, "has NaN or infinite coordinates")
    largest = points.abs().flatten(1).amax(dim=1)
    _raise_for_first(largest > MAX_COORDINATE, names,
                     f"has coordinates beyond +-{MAX_COORDINATE:g}, where its norms overflow; rescale it")  # fmt: skip
    if normalize:
        extent = (points.amax(dim=1) - points.amin(dim=1)).amax(dim=1)
        degenerate = extent <= DEGENERATE_STEPS * torch.finfo(points.dtype).eps * largest
        _raise_for_first(degenerate, names,
                         "is degenerate (all points coincide up to rounding) and cannot be scaled to the unit sphere; "
                         "pass normalize=False to render it as is")  # fmt: skip


def check_rendered_views(views: torch.Tensor, background: float, names: Sequence[str] | None = None) -> None:
    r"""
    Raise a `ValueError` naming the first cloud whose every view is blank (all background): nothing of it was seen,
    typically a cloud far outside the unit sphere rendered with `normalize=False`.

    Args:
        views (`torch.Tensor` of shape `(batch, views, H, W)`):
            Rendered maps.
        background (`float`):
            The projection style's background value.
        names (`Sequence[str]`, *optional*):
            How the message names each cloud; by default `"Point cloud {index}"`.
    """
    blank = (views == background).flatten(1).all(dim=1)
    problem = "renders to blank images in every view (is it far outside the unit sphere? use normalize=True)"
    _raise_for_first(blank, names, problem)


def _name(names: Sequence[str] | None, index: int) -> str:
    return names[index] if names is not None else f"Point cloud {index}"


def _raise_for_first(bad: torch.Tensor, names: Sequence[str] | None, problem: str) -> None:
    if bad.any():
        raise ValueError(f"{_name(names, int(bad.nonzero()[0]))} {problem}.")


def check_up_axis(up_axis: str | None) -> None:
    """Raise a `ValueError` naming the choices unless `up_axis` is one of `UP_AXES` or `None`."""
    if up_axis is not None:
        _check_choice(up_axis, UP_AXES, "up axis", " (or None for the file's convention)")


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
    _raise_for_first(degenerate, None, "is degenerate (a single point or all points identical) and cannot be scaled "
                     "to the unit sphere; pass normalize=False to render it as is")  # fmt: skip
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
    _check_choice(method, SAMPLING_METHODS, "sampling method")


def _check_choice(value: str | None, choices: tuple[str | None, ...], what: str, note: str = "") -> None:
    """Raise a `ValueError` naming `what` and the `choices` (and `note`) unless `value` is one of them."""
    if value not in choices:
        raise ValueError(f"Unknown {what} {value!r}; choose one of {choices}{note}.")
