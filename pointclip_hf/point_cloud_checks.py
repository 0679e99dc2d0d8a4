"""The cloud rules, in one place: which point clouds can be rendered into meaningful views."""

from collections.abc import Sequence

import torch

# Beyond this magnitude a float32 squared norm overflows (sqrt(3.4e38 / 3) is about 1e19): no real scan is that large.
MAX_COORDINATE = 1e18
# Extent, in rounding steps of the cloud's own dtype at its largest coordinate, up to which a cloud is one point.
DEGENERATE_STEPS = 64


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
