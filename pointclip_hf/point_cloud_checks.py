"""The cloud rules, in one place: which point clouds can be rendered into meaningful views."""

import torch

# Beyond this magnitude a float32 squared norm overflows (sqrt(3.4e38 / 3) is about 1e19): no real scan is that large.
MAX_COORDINATE = 1e18
# Extent (relative to the largest coordinate) below which a cloud is one point up to rounding: a few float32 steps.
MIN_RELATIVE_EXTENT = 64 * torch.finfo(torch.float32).eps


def check_point_clouds(points: torch.Tensor, normalize: bool, first_index: int = 0) -> None:
    r"""
    Raise a `ValueError` naming the first unusable cloud of a batch: a cloud with NaN or infinite coordinates, with
    coordinates so large that its norms overflow, or (when it is to be scaled to the unit sphere) a degenerate one
    whose points coincide up to rounding relative to its own scale (all at 12345.678, say).

    Args:
        points (`torch.Tensor` of shape `(batch, points, 3)`):
            Floating-point clouds, in their own dtype.
        normalize (`bool`):
            Whether the clouds will be scaled to the unit sphere (degenerate clouds then cannot be).
        first_index (`int`, *optional*, defaults to 0):
            The index of the first cloud of `points`, used in the message.
    """
    if points.shape[1] == 0:
        raise ValueError(f"Point cloud {first_index} is empty (0 points).")
    finite = torch.isfinite(points).flatten(1).all(dim=1)
    _raise_for_first(~finite, first_index, "has NaN or infinite coordinates")
    largest = points.abs().flatten(1).amax(dim=1)
    _raise_for_first(largest > MAX_COORDINATE, first_index,
                     f"has coordinates beyond +-{MAX_COORDINATE:g}, where its norms overflow; rescale it")  # fmt: skip
    if normalize:
        extent = (points.amax(dim=1) - points.amin(dim=1)).amax(dim=1)
        degenerate = extent <= MIN_RELATIVE_EXTENT * largest
        _raise_for_first(degenerate, first_index,
                         "is degenerate (all points coincide up to rounding) and cannot be scaled to the unit sphere; "
                         "pass normalize=False to render it as is")  # fmt: skip


def check_rendered_views(views: torch.Tensor, background: float, first_index: int = 0) -> None:
    r"""
    Raise a `ValueError` naming the first cloud whose every view is blank (all background): nothing of it was seen,
    typically a cloud far outside the unit sphere rendered with `normalize=False`.

    Args:
        views (`torch.Tensor` of shape `(batch, views, H, W)`):
            Rendered maps.
        background (`float`):
            The projection style's background value.
        first_index (`int`, *optional*, defaults to 0):
            The index of the first cloud of `views`, used in the message.
    """
    blank = (views == background).flatten(1).all(dim=1)
    problem = "renders to blank images in every view (is it far outside the unit sphere? use normalize=True)"
    _raise_for_first(blank, first_index, problem)


def _raise_for_first(bad: torch.Tensor, first_index: int, problem: str) -> None:
    if bad.any():
        raise ValueError(f"Point cloud {first_index + int(bad.nonzero()[0])} {problem}.")
