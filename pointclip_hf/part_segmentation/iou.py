"""Part-segmentation IoU as the point-cloud community computes it on ShapeNetPart: per shape, the mean over the
category's parts of |prediction & truth| / |prediction | truth|, a part absent from both counting 1; instance mIoU is
the mean over shapes, category mIoU the mean over categories of their shapes' mean."""

from dataclasses import dataclass, field

import numpy as np


def shape_iou(prediction, truth, part_ids) -> float:
    r"""
    The IoU of one shape.

    Args:
        prediction (`np.ndarray` of shape `(points,)`):
            Predicted part ids.
        truth (`np.ndarray` of shape `(points,)`):
            True part ids.
        part_ids (`Sequence[int]`):
            The parts of the shape's category.

    Returns:
        `float` in [0, 1].
    """
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.shape != truth.shape or prediction.ndim != 1:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} must be the same 1-D shape.")
    parts = np.asarray(list(part_ids))[:, None]
    predicted, true = prediction[None] == parts, truth[None] == parts
    intersection = (predicted & true).sum(axis=1)
    union = (predicted | true).sum(axis=1)
    return float(np.where(union == 0, 1.0, intersection / np.maximum(union, 1)).mean())


@dataclass
class PartIoUReport:
    r"""
    Args:
        shape_ious (`list[float]`):
            One IoU per shape, in input order.
        categories (`list[str]`):
            The category of each shape.
        instance_miou (`float`):
            Mean over shapes.
        category_miou (`float`):
            Mean over categories of the category means.
        category_ious (`dict[str, float]`):
            Mean per category.
    """

    shape_ious: list[float]
    categories: list[str]
    instance_miou: float = 0.0
    category_miou: float = 0.0
    category_ious: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_shapes(cls, shape_ious, categories) -> "PartIoUReport":
        """Summarise per-shape IoUs and their categories."""
        shape_ious, categories = [float(iou) for iou in shape_ious], list(categories)
        if not shape_ious or len(shape_ious) != len(categories):
            raise ValueError(f"Give one category per shape IoU, got {len(shape_ious)} and {len(categories)}.")
        per_category = {name: float(np.mean([iou for iou, c in zip(shape_ious, categories) if c == name]))
                        for name in dict.fromkeys(categories)}  # fmt: skip
        return cls(shape_ious, categories, float(np.mean(shape_ious)), float(np.mean(list(per_category.values()))),
                   per_category)  # fmt: skip

    def to_dict(self) -> dict:
        return {"instance_miou": self.instance_miou, "category_miou": self.category_miou,
                "category_ious": self.category_ious, "num_shapes": len(self.shape_ious)}  # fmt: skip
