"""Zero-shot part segmentation evaluated on ShapeNetPart-style data: each shape is segmented with its category's parts
and view weights, and scored with the community's shape IoU."""

import numpy as np
from huggingface_hub.utils import tqdm

from .iou import PartIoUReport, shape_iou
from .presets import part_preset


def evaluate_part_segmentation(model, dataset, processor=None, transposed_lookup: bool = False,
                               scrambled_patch_tokens: bool = False, reference_view_weights: bool = True,
                               prompt_templates=None, part_prompts=None,
                               progress: bool = False) -> PartIoUReport:  # fmt: skip
    r"""
    Segment every shape of `dataset` and report instance and category mIoU.

    Args:
        model ([`PointCLIPForZeroShotPartSegmentation`]):
            The model.
        dataset (`datasets.Dataset`):
            Rows with `points`, `category` (a `ClassLabel` of ShapeNetPart categories) and `part_ids` (global ids), as
            from [`~part_segmentation.data.load_shapenet_part`].
        processor ([`PointCLIPProcessor`], *optional*):
            Defaults to the model's.
        transposed_lookup (`bool`, *optional*, defaults to `False`):
            Read the reference's transposed pixels (with `scrambled_patch_tokens`, to reproduce its figures).
        scrambled_patch_tokens (`bool`, *optional*, defaults to `False`):
            Score the reference's scrambled patch tokens (its saved-feature layout bug; with `transposed_lookup`, its
            end-to-end behaviour).
        reference_view_weights (`bool`, *optional*, defaults to `True`):
            Use the reference's per-category view weights; otherwise the model's.
        prompt_templates (`list[str]`, *optional*):
            Part templates (`{}` for the part, `{object}` for the category).
        part_prompts (`dict[str, dict[str, list[str]]]`, *optional*):
            Sentences per category and part, replacing the templates for the parts they name.
        progress (`bool`, *optional*, defaults to `False`):
            Show a progress bar.

    Returns:
        [`PartIoUReport`].
    """
    from ..model.pipeline_pointclip_part_segmentation import PointCloudZeroShotPartSegmentationPipeline

    segmenter = PointCloudZeroShotPartSegmentationPipeline(model=model, processor=processor, device=model.device)
    names = dataset.features["category"].names
    ious, categories = [], []
    for row in tqdm(dataset.with_format("numpy"), total=len(dataset), disable=not progress, desc="segmenting"):
        preset = part_preset(names[int(row["category"])])
        result = segmenter(
            row["points"],
            parts=list(preset.parts),
            object_name=preset.category,
            view_weights=list(preset.view_weights) if reference_view_weights else None,
            transposed_lookup=transposed_lookup,
            scrambled_patch_tokens=scrambled_patch_tokens,
            prompt_templates=prompt_templates,
            part_prompts=(part_prompts or {}).get(preset.category),
        )
        prediction = np.asarray(result["label_ids"]) + preset.first_part_id
        part_ids = range(preset.first_part_id, preset.first_part_id + len(preset.parts))
        ious.append(shape_iou(prediction, np.asarray(row["part_ids"]), part_ids))
        categories.append(preset.category)
    return PartIoUReport.from_shapes(ious, categories)
