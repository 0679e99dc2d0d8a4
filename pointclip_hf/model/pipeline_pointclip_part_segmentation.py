"""The `"point-cloud-zero-shot-part-segmentation"` pipeline: a cloud and part names in, a part per point out."""

import torch

from .feature_extraction_pointclip import normalize_to_unit_sphere, to_point_batch
from .pipeline_pointclip import DEFAULT_CHECKPOINT, PointCLIPPipeline, check_no_unknown_arguments
from .processing_pointclip import PointCLIPProcessor
from .projection_part_segmentation import render_part_views
from .prompts import check_labels, check_prompt_template

PART_SEGMENTATION_TASK = "point-cloud-zero-shot-part-segmentation"
PART_SEGMENTATION_PIPELINES = {
    PART_SEGMENTATION_TASK: {
        "impl": "pipeline_pointclip_part_segmentation.PointCloudZeroShotPartSegmentationPipeline",
        "pt": ["AutoModel"],
        "tf": [],
        "type": "multimodal",
        "default": {"model": [DEFAULT_CHECKPOINT, "main"]},
    }
}
DEFAULT_OBJECT_NAME = "object"


def check_parts(parts) -> list[str]:
    """Return `parts` as a list of at least 2 distinct part names, or raise naming the problem."""
    parts = check_labels(parts)
    if len(parts) < 2:
        raise ValueError(f"Part segmentation needs at least 2 parts, got {parts}.")
    return parts


def part_prompt_templates(templates, object_name: str | None) -> list[str]:
    """Templates, checked, with `{object}` replaced by the object's name (`"object"` when unknown; its braces kept as
    text), one `{}` left for the part."""
    name = (object_name or DEFAULT_OBJECT_NAME).replace("_", " ").replace("{", "{{").replace("}", "}}")
    return [check_prompt_template(template, "Part prompt template", object_field=True).replace("{object}", name)
            for template in templates]  # fmt: skip


def part_embeddings(model, processor: PointCLIPProcessor, parts, object_name=None, prompt_templates=None,
                    part_prompts=None) -> torch.Tensor:  # fmt: skip
    r"""
    Normalised text embeddings of the part prompts.

    Args:
        model ([`PointCLIPForZeroShotPartSegmentation`]):
            Its text tower encodes the prompts.
        processor ([`PointCLIPProcessor`]):
            Its tokenizer.
        parts (`list[str]`):
            Part names.
        object_name (`str`, *optional*):
            Fills `{object}` in the templates.
        prompt_templates (`list[str]`, *optional*):
            Defaults to `model.config.prompt_templates`.
        part_prompts (`dict[str, list[str]]`, *optional*):
            Sentences per part that replace the templates for the parts they name.

    Returns:
        `torch.Tensor` of shape `(parts, C)`.
    """
    templates = part_prompt_templates(prompt_templates or model.config.prompt_templates, object_name)
    max_length = model.config.clip_config.text_config.max_position_embeddings
    tokens = processor.tokenize_labels(parts, templates, part_prompts, max_length=max_length, device=model.device)
    with torch.no_grad():
        return model.get_text_features(**tokens)


def scores_to_segmentation(logits: torch.Tensor, visible: torch.Tensor, parts: list[str]) -> dict:
    r"""
    Args:
        logits (`torch.Tensor` of shape `(points, parts)`):
            Point scores of one cloud.
        visible (`torch.Tensor` of shape `(points,)`):
            Whether each point is seen in a view with a positive weight.
        parts (`list[str]`):
            Part names in score order.

    Returns:
        `dict` with `parts`, `labels` (a part name per point), `label_ids` (`np.ndarray` `(points,)`), `scores`
        (`np.ndarray` `(points, parts)`, softmax over parts) and `visible` (`np.ndarray` of bools `(points,)`).
    """
    scores = logits.float().softmax(dim=-1).cpu()
    label_ids = scores.argmax(dim=-1).numpy()
    return {
        "parts": list(parts),
        "labels": [parts[index] for index in label_ids],
        "label_ids": label_ids,
        "scores": scores.numpy(),
        "visible": visible.cpu().numpy(),
    }


class PointCloudZeroShotPartSegmentationPipeline(PointCLIPPipeline):
    r"""
    Zero-shot part segmentation with a [`PointCLIPForZeroShotPartSegmentation`]: every point of the cloud gets the part
    whose prompt best matches the CLIP patches it is seen in.

    ```python
    >>> from transformers import pipeline
    >>> segmenter = pipeline("point-cloud-zero-shot-part-segmentation", model="openai/clip-vit-base-patch16")
    >>> segmenter("chair.ply", parts=["back", "seat", "leg", "armrest"], object_name="chair")["labels"][:3]
    ['seat', 'seat', 'leg']
    ```

    Every point of the cloud is labelled (no sampling); it is turned y up by the processor's `up_axis` (as
    [`PointCLIPFeatureExtractor`] does), and centred and scaled to the unit sphere when its `normalize` is set. Call
    arguments: `parts`, `object_name`, `prompt_templates` (with `{}` for the part and optionally `{object}`),
    `part_prompts` (`{part: [sentences]}`), `view_weights`, and two switches that reproduce bugs of the reference's
    released code, for parity checks only: `transposed_lookup` (its transposed pixel reading) and
    `scrambled_patch_tokens` (its saved-feature layout, see [`scramble_patch_tokens`]). Both together are the
    reference's end-to-end behaviour.
    """

    def __init__(self, model, processor=None, **kwargs):
        super().__init__(model, processor, **kwargs)
        self._text_cache = {}

    def _sanitize_parameters(self, parts=None, object_name=None, prompt_templates=None, part_prompts=None,
                             view_weights=None, transposed_lookup=None, scrambled_patch_tokens=None,
                             **unknown):  # fmt: skip
        check_no_unknown_arguments(self, unknown)
        preprocess = {"transposed_lookup": bool(transposed_lookup)}
        forward = {"object_name": object_name, "prompt_templates": prompt_templates, "part_prompts": part_prompts,
                   "scrambled_patch_tokens": bool(scrambled_patch_tokens)}  # fmt: skip
        if parts is not None:
            forward["parts"] = check_parts(parts)
        if view_weights is not None:
            forward["view_weights"] = self._check_view_weights(view_weights)
        return preprocess, forward, {"parts": forward.get("parts")}

    def _check_view_weights(self, view_weights) -> list[float]:
        weights = [float(weight) for weight in view_weights]
        if len(weights) != self.model.config.num_views or any(not w >= 0 for w in weights) or not any(weights):
            raise ValueError(
                f"view_weights must be {self.model.config.num_views} non-negative numbers, not all 0; got {weights}."
            )
        return weights

    def preprocess(self, point_cloud, transposed_lookup=False):
        extractor = self.feature_extractor
        points = to_point_batch(point_cloud, extractor.up_axis)
        points = (points if isinstance(points, torch.Tensor) else points[0][None]).float()  # rendering checks it
        if extractor.normalize:
            points = normalize_to_unit_sphere(points)
        views = render_part_views(points, image_size=extractor.image_size, transposed_lookup=transposed_lookup)
        pixel_values = views.images[:, :, None].expand(-1, -1, 3, -1, -1)
        if extractor.clip_normalize:
            mean = torch.tensor(extractor.image_mean)[:, None, None]
            pixel_values = (pixel_values - mean) / torch.tensor(extractor.image_std)[:, None, None]
        return {"pixel_values": pixel_values, "point_pixels": views.pixels, "point_visible": views.visible}

    def _forward(self, model_inputs, parts=None, object_name=None, prompt_templates=None, part_prompts=None,
                 view_weights=None, scrambled_patch_tokens=False):  # fmt: skip
        if parts is None:
            raise ValueError("Give parts: at least 2 part names.")
        key = (tuple(parts), object_name, tuple(prompt_templates or ()), repr(part_prompts))
        if key not in self._text_cache:
            self._text_cache = {key: part_embeddings(self.model, self.processor, parts, object_name,
                                                     prompt_templates, part_prompts)}  # fmt: skip
        output = self.model(**model_inputs, text_embeds=self._text_cache[key], view_weights=view_weights,
                            scrambled_patch_tokens=scrambled_patch_tokens)  # fmt: skip
        weights = self.model._view_weights(view_weights, output.patch_features)
        visible = (model_inputs["point_visible"].to(weights.device) & (weights > 0)[:, None]).any(dim=1)
        if not visible.any():
            raise ValueError("The point cloud cannot be seen from any view with a positive weight.")
        return {"logits": output.logits, "visible": visible}

    def postprocess(self, model_outputs, parts=None):
        return scores_to_segmentation(model_outputs["logits"][0], model_outputs["visible"][0], parts)


__all__ = ["PART_SEGMENTATION_TASK", "PointCloudZeroShotPartSegmentationPipeline", "check_parts", "part_embeddings"]
