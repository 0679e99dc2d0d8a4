"""Zero-shot part segmentation with PointCLIP V2's head: CLIP patch tokens of the depth views scored against part
prompts, smoothed, upsampled and read back at each point's pixel, summed over the views where the point is visible."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput, can_return_tuple

from .choices import PART_SEGMENTATION_STYLE
from .configuration_pointclip import PointCLIPPartSegmentationConfig
from .cpu_threads import run_on_cpu_thread
from .modeling_pointclip import PointCLIPPreTrainedModel

# The reference head's smoothing of the patch score maps: ReplicationPad2d([2, 3, 2, 3]) then AvgPool2d(6, stride 1).
SCORE_PADDING = (2, 3, 2, 3)
SCORE_POOL = 6


@dataclass
class PointCLIPPartSegmentationOutput(ModelOutput):
    r"""
    Args:
        logits (`torch.FloatTensor` of shape `(batch, points, parts)`):
            Per-point part scores: the view-weighted sum, over the views where the point is visible, of the smoothed
            patch-prompt similarities at its pixel.
        patch_features (`torch.FloatTensor` of shape `(batch, views, patches, C)`):
            Normalised CLIP patch embeddings (post-layernorm and projection, as the pooled token), row-major grid.
        text_embeds (`torch.FloatTensor` of shape `(parts, C)`):
            Normalised part-prompt embeddings.
    """

    logits: torch.FloatTensor | None = None
    patch_features: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


def scramble_patch_tokens(patch_features: torch.Tensor) -> torch.Tensor:
    r"""
    The patch "tokens" the reference's head actually scores: a bug of the released code, reproduced for parity only.
    `zeroshot_seg/main.py` saves each view's patch map channel-first (`[C, grid, grid]`, i.e. `[N, 10, 512, 14, 14]`)
    and `post_search.py` reads it back with `reshape(-1, 10, 196, 512)`, a reshape where a permute was needed. So
    "token" `j` holds the flat entries `j * C` to `(j + 1) * C - 1` of the channel-first map, which are a few channels
    of every patch (for ViT-B/16, channels `2.6 j` to `2.6 (j + 1)` of all 196 patches), and is no longer normalised.

    Args:
        patch_features (`torch.Tensor` of shape `(..., grid * grid, C)`):
            Patch embeddings, the patches in row-major order.

    Returns:
        `torch.Tensor` of the same shape: each view's `(C, grid * grid)` channel-first map read as `(grid * grid, C)`.
        For 196 patches and 512 channels this is exactly the reference's read-back; for other sizes (where the
        reference's hard-coded reshape would mix clouds or fail) it is the same mistake within each view.
    """
    return patch_features.transpose(-1, -2).reshape(patch_features.shape)


def part_logits_at_points(
    patch_features: torch.Tensor,
    text_embeds: torch.Tensor,
    point_pixels: torch.Tensor,
    point_visible: torch.Tensor,
    view_weights: torch.Tensor,
    image_size: int,
    scale: float | torch.Tensor = 100.0,
) -> torch.Tensor:
    r"""
    PointCLIP V2's segmentation head (the reference `post_search.run_epoch`): the view-weighted sum of
    [`part_scores_per_view`].

    Args:
        patch_features (`torch.Tensor` of shape `(batch, views, grid * grid, C)`):
            Normalised patch embeddings of a square, row-major patch grid.
        text_embeds (`torch.Tensor` of shape `(parts, C)`):
            Normalised part embeddings.
        point_pixels (integer `torch.Tensor` of shape `(batch, views, points, 2)`):
            The (row, column) in the `image_size` x `image_size` view each point is read at.
        point_visible (`torch.Tensor` of shape `(batch, views, points)`):
            1 (or `True`) where the point is visible in the view.
        view_weights (`torch.Tensor` of shape `(views,)`):
            Weight per view.
        image_size (`int`):
            The side of the views the pixels refer to; the score maps are upsampled to it.
        scale (`float` or `torch.Tensor`, *optional*, defaults to 100):
            Multiplies the cosine similarities.

    Returns:
        `torch.Tensor` of shape `(batch, points, parts)`.
    """
    scores = part_scores_per_view(patch_features, text_embeds, point_pixels, point_visible, image_size, scale)
    return (scores * view_weights.to(scores.dtype)[:, None, None]).sum(dim=1)


def part_scores_per_view(patch_features, text_embeds, point_pixels, point_visible, image_size: int,
                         scale: float | torch.Tensor = 100.0) -> torch.Tensor:  # fmt: skip
    r"""
    Each view's smoothed, upsampled patch-part scores at each point's pixel, 0 where the point is not visible; one
    cloud at a time so that a cloud's scores never depend on its batch. Arguments as [`part_logits_at_points`].

    Returns:
        `torch.Tensor` of shape `(batch, views, points, parts)`.
    """
    batch, views, patches, _ = patch_features.shape
    grid = int(round(patches**0.5))
    if grid * grid != patches:
        raise ValueError(f"patch_features hold {patches} patches per view, not a square grid.")
    visible = point_visible.to(patch_features.dtype)[..., None]
    text_embeds = text_embeds.to(patch_features.dtype)
    return torch.cat(
        [
            _cloud_part_scores(patches_v, text_embeds, pixels_v, grid, image_size, scale) * visible_v
            for patches_v, pixels_v, visible_v in zip(patch_features, point_pixels, visible)
        ]
    )


def _cloud_part_scores(patch_features, text_embeds, pixels, grid: int, image_size: int, scale) -> torch.Tensor:
    """One cloud: `[V, G*G, C]` patches -> `[1, V, N, P]` scores at the points' pixels."""
    views = patch_features.shape[0]
    scores = scale * patch_features @ text_embeds.T
    maps = scores.transpose(1, 2).reshape(views, -1, grid, grid)
    maps = F.avg_pool2d(F.pad(maps, SCORE_PADDING, mode="replicate"), SCORE_POOL, stride=1)
    maps = F.interpolate(maps, size=(image_size, image_size), mode="bilinear", align_corners=False)
    view_index = torch.arange(views, device=maps.device)[:, None]
    rows, cols = pixels.int().unbind(-1)
    return maps.permute(0, 2, 3, 1)[view_index, rows, cols][None]


class PointCLIPForZeroShotPartSegmentation(PointCLIPPreTrainedModel):
    r"""
    Zero-shot part segmentation with a frozen CLIP, PointCLIP V2's way: which part of the object is each point?

    The views of the `"pointclip_v2_part_segmentation"` projection go through CLIP's image tower; every patch token goes
    through the tower's post-layernorm and projection, as the pooled token does, giving one embedding per patch of a
    `image_size / patch_size` grid (14 x 14 for ViT-B/16 at 224). Each patch is scored against each part prompt
    (`logit_scale.exp()` times the cosine: 100 for the OpenAI checkpoints, the reference's hard-coded value, and the
    model's own calibration for other CLIPs), the score maps are smoothed and upsampled to the image, and each point
    gets the view-weighted sum of the scores at its pixel in the views where it is visible.

    It shares the CLIP weights with [`PointCLIPModel`] and has its own [`PointCLIPPartSegmentationConfig`] (`model_type`
    `"pointclip_part_segmentation"`, so `AutoModel` finds it): load it from any CLIP checkpoint with
    `PointCLIPForZeroShotPartSegmentation.from_pretrained("openai/clip-vit-base-patch16")`, and segment with
    `model.segment(cloud, parts=[...], object_name="chair")` or the `"point-cloud-zero-shot-part-segmentation"`
    pipeline.

    Args:
        config ([`PointCLIPPartSegmentationConfig`]):
            The configuration (a [`PointCLIPConfig`] with the part-segmentation projection is converted).
    """

    _auto_class = "AutoModel"  # save_pretrained writes it into the auto_map
    config: PointCLIPPartSegmentationConfig

    def __init__(self, config: PointCLIPPartSegmentationConfig):
        super().__init__(config)
        self.post_init()

    @property
    def patch_grid_size(self) -> int:
        """Patches per side of CLIP's patch grid: `image_size // patch_size` of the vision config."""
        vision = self.config.clip_config.vision_config
        return vision.image_size // vision.patch_size

    def get_patch_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        r"""
        Normalised CLIP embeddings of every patch of every view, whole clouds per tower call (see
        [`~PointCLIPModel.get_view_features`]), so that a cloud's features never depend on its batch.

        Args:
            pixel_values (`torch.Tensor` of shape `(batch, views, 3, S, S)`):
                The views.

        Returns:
            `torch.Tensor` of shape `(batch, views, grid * grid, C)`, the patches in row-major order.
        """
        return self.encode_in_fixed_calls(pixel_values, self._encode_patches)

    def _encode_patches(self, images: torch.Tensor) -> torch.Tensor:
        vision = self.clip.vision_model
        tokens = vision.post_layernorm(vision(pixel_values=images).last_hidden_state[:, 1:])
        return F.normalize(self.clip.visual_projection(tokens), dim=-1)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        point_pixels: torch.Tensor | None = None,
        point_visible: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prompt_class_ids: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        patch_features: torch.Tensor | None = None,
        view_weights: torch.Tensor | None = None,
        scrambled_patch_tokens: bool = False,
    ) -> PointCLIPPartSegmentationOutput:
        r"""
        Args:
            pixel_values (`torch.Tensor` of shape `(batch, views, 3, S, S)`, *optional*):
                The views (from [`~projection_part_segmentation.render_part_views`]); or give `patch_features`.
            point_pixels (integer `torch.Tensor` of shape `(batch, views, points, 2)`):
                The (row, column) in the `S` x `S` view each point is read at.
            point_visible (`torch.Tensor` of shape `(batch, views, points)`):
                Whether each point is visible in each view.
            input_ids (`torch.Tensor` of shape `(prompts, length)`, *optional*):
                Tokenised part prompts; or give `text_embeds`.
            attention_mask (`torch.Tensor` of shape `(prompts, length)`, *optional*):
                Padding mask of `input_ids`.
            prompt_class_ids (`torch.Tensor` of shape `(prompts,)`, *optional*):
                The part each prompt belongs to (default: one prompt per part).
            text_embeds (`torch.Tensor` of shape `(parts, C)`, *optional*):
                Part embeddings.
            patch_features (`torch.Tensor` of shape `(batch, views, grid * grid, C)`, *optional*):
                Normalised patch embeddings (e.g. cached).
            view_weights (`torch.Tensor` of shape `(views,)`, *optional*):
                Defaults to `config.view_weights`, else all 1.
            scrambled_patch_tokens (`bool`, *optional*, defaults to `False`):
                Score the reference's scrambled patch tokens ([`scramble_patch_tokens`], a bug of its released code)
                instead of the patches, for parity with its outputs only. `patch_features` in the output stay the
                true patch embeddings.
        """
        if patch_features is None:
            if pixel_values is None:
                raise ValueError("Give pixel_values or patch_features.")
            patch_features = self.get_patch_features(pixel_values)
        text_embeds = self._part_embeddings(input_ids, attention_mask, prompt_class_ids, text_embeds)
        self._check_points(patch_features, point_pixels, point_visible)
        logits = run_on_cpu_thread(
            part_logits_at_points,
            scramble_patch_tokens(patch_features) if scrambled_patch_tokens else patch_features,
            text_embeds,
            point_pixels.to(patch_features.device),
            point_visible.to(patch_features.device),
            self._view_weights(view_weights, patch_features),
            image_size=self.config.clip_config.vision_config.image_size,
            scale=self.clip.logit_scale.exp().to(patch_features.dtype),
            device=patch_features.device,
        )
        return PointCLIPPartSegmentationOutput(logits=logits, patch_features=patch_features, text_embeds=text_embeds)

    def _part_embeddings(self, input_ids, attention_mask, prompt_class_ids, text_embeds) -> torch.Tensor:
        if text_embeds is None and input_ids is None:
            raise ValueError("Give the part prompts as input_ids or text_embeds.")
        if text_embeds is None:
            text_embeds = self.get_text_features(input_ids, attention_mask, prompt_class_ids)
        if text_embeds.ndim != 2 or text_embeds.shape[0] < 2:
            shape = tuple(text_embeds.shape)
            raise ValueError(f"Part segmentation needs at least 2 parts, got text_embeds of shape {shape}.")
        return F.normalize(text_embeds.to(self.device), dim=-1)

    def _check_points(self, patch_features, point_pixels, point_visible) -> None:
        if point_pixels is None or point_visible is None:
            raise ValueError("Give point_pixels and point_visible (from render_part_views).")
        batch, views = patch_features.shape[:2]
        if point_pixels.ndim != 4 or tuple(point_pixels.shape[:2]) != (batch, views) or point_pixels.shape[-1] != 2:
            raise ValueError(f"point_pixels must be [{batch}, {views}, points, 2], got {tuple(point_pixels.shape)}.")
        if tuple(point_visible.shape) != tuple(point_pixels.shape[:3]):
            expected = tuple(point_pixels.shape[:3])
            raise ValueError(f"point_visible must be {expected}, got {tuple(point_visible.shape)}.")
        size = self.config.clip_config.vision_config.image_size
        if point_pixels.numel() and (point_pixels.min() < 0 or point_pixels.max() >= size):
            raise ValueError(f"point_pixels must lie in [0, {size}) (the CLIP image size).")

    def _view_weights(self, view_weights, patch_features) -> torch.Tensor:
        if view_weights is None:
            view_weights = self.config.view_weights or [1.0] * patch_features.shape[1]
        weights = torch.as_tensor(view_weights, dtype=patch_features.dtype, device=patch_features.device)
        if weights.shape != (patch_features.shape[1],):
            raise ValueError(f"view_weights must hold one weight per view ({patch_features.shape[1]}).")
        return weights

    def segment(self, point_clouds, parts, object_name: str | None = None, processor=None, **pipeline_kwargs):
        r"""
        Label every point of one cloud or several with a part: a short call for the
        `"point-cloud-zero-shot-part-segmentation"` pipeline, with the same rules and results.

        Args:
            point_clouds (`np.ndarray`, `torch.Tensor`, `str` or a list of them):
                One cloud of shape `(N, 3+)` or a file path, or several.
            parts (`list[str]` or `str`):
                At least 2 distinct part names (a comma-separated string works too).
            object_name (`str`, *optional*):
                What the object is (e.g. `"chair"`), used in the prompts.
            processor ([`PointCLIPProcessor`], *optional*):
                Defaults to `model.processor`, else the one that belongs to the model.
            pipeline_kwargs:
                More pipeline arguments (`prompt_templates`, `part_prompts`, `view_weights`, `transposed_lookup`,
                `scrambled_patch_tokens`).

        Returns:
            For one cloud a `dict` with `parts`, per-point `labels` (part names), `label_ids` `(N,)` and `scores`
            `(N, parts)` (softmax over parts); for several, a list of them.
        """
        from .pipeline_pointclip_part_segmentation import PointCloudZeroShotPartSegmentationPipeline

        pipeline = PointCloudZeroShotPartSegmentationPipeline(
            model=self, processor=processor or self.processor, device=self.device
        )
        return pipeline(point_clouds, parts=parts, object_name=object_name, **pipeline_kwargs)

    def custom_pipelines(self) -> dict:
        """The part-segmentation pipeline, named in `config.json` by `save_pretrained`."""
        from .pipeline_pointclip_part_segmentation import PART_SEGMENTATION_PIPELINES

        return PART_SEGMENTATION_PIPELINES

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        r"""
        Load from a CLIP checkpoint (choose fields such as `view_weights=[...]` as keyword arguments; the projection
        defaults to `"pointclip_v2_part_segmentation"`) or from a saved PointCLIP folder or repo, as
        [`PointCLIPPreTrainedModel.from_pretrained`] does.
        """
        if "config" not in kwargs:
            kwargs.setdefault("projection_style", PART_SEGMENTATION_STYLE)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)


__all__ = [
    "PointCLIPForZeroShotPartSegmentation",
    "PointCLIPPartSegmentationOutput",
    "part_logits_at_points",
    "part_scores_per_view",
    "scramble_patch_tokens",
]
