"""Random augmentation of point clouds for few-shot training (PointCLIP's `translate_pointcloud`)."""

import torch


def augment_point_clouds(
    points: torch.Tensor,
    generator: torch.Generator,
    scale_range: tuple[float, float] = (2 / 3, 3 / 2),
    shift_range: float = 0.2,
) -> torch.Tensor:
    """
    PointCLIP's `translate_pointcloud` for a batch: per cloud and axis, scale by U(scale_range) then shift by
    U(-shift_range, shift_range). The reference's point shuffle is left out: the projection does not depend on point
    order, up to float rounding.

    Args:
        points (`torch.Tensor` of shape `(batch, num_points, 3)`):
            The clouds.
        generator (`torch.Generator`):
            A CPU generator; the scales are drawn first, then the shifts.
        scale_range (`tuple[float, float]`, *optional*, defaults to `(2/3, 3/2)`):
            Bounds of the per-axis scale.
        shift_range (`float`, *optional*, defaults to 0.2):
            Bound of the per-axis shift.

    Returns:
        `torch.Tensor` of shape `(batch, num_points, 3)`, on the device and with the dtype of `points`.
    """
    batch = points.shape[0]
    scale = torch.empty(batch, 1, 3, dtype=torch.float32).uniform_(*scale_range, generator=generator)
    shift = torch.empty(batch, 1, 3, dtype=torch.float32).uniform_(-shift_range, shift_range, generator=generator)
    return points * scale.to(points) + shift.to(points)


__all__ = ["augment_point_clouds"]
