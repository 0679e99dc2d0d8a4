"""PointCLIP configuration: the CLIP backbone, the projection, the views, the prompts and the optional adapter."""

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, PreTrainedConfig

from .choices import PART_SEGMENTATION_STYLE
from .projection import get_projection_style
from .prompts import DEFAULT_TEMPLATES, check_labels, check_prompt_template

MAX_VIEW_WEIGHT = 100.0
MIN_LARGEST_VIEW_WEIGHT = 1e-3
MAX_IMAGES_PER_BATCH = 1024


@strict
class PointCLIPConfig(PreTrainedConfig):
    r"""
    Configuration of a [`PointCLIPModel`].

    clip_config (`dict` or `CLIPConfig`, *optional*):
        The nested CLIP configuration (text and vision towers).
    clip_model_name_or_path (`str`, *optional*, defaults to `"openai/clip-vit-base-patch16"`):
        Where the frozen CLIP weights come from. `save_pretrained` writes only the adapter and this pointer; set it to
        `None` to store the CLIP weights inside the checkpoint itself.
    clip_revision (`str`, *optional*):
        The commit of `clip_model_name_or_path` the model was built on, recorded when it comes from the Hub; the base
        CLIP is loaded at this commit, so an adapter never follows later changes of the base repo.
    projection_style (`str`, *optional*, defaults to `"pointclip_v1"`):
        How a cloud becomes depth maps: `"pointclip_v1"` (6 views), `"pointclip_v1_fewshot"` (10 views) or
        `"pointclip_v2"` (10 views, realistic projection). See `pointclip_hf.model.projection`.
    num_views (`int`, *optional*):
        Number of views; derived from `projection_style` and checked against it.
    view_weights (`list[float]`, *optional*):
        Weight per view in `[0, 100]` (all 1 when unset), as searched by `pointclip_hf.tuning`, the largest at least
        0.001; only their ratios matter for the ranking, but they scale the logits: larger values would overflow
        half-precision logits, smaller ones make every label score the same.
    prompt_templates (`list[str]`, *optional*):
        Templates with one `{}` for the label; several are averaged CLIP-style. Defaults to the style's template.
    class_prompts (`dict[str, list[str]]`, *optional*):
        Per-class sentences (the format of PointCLIP V2's LLM prompt files); they replace the templates for the
        classes they name.
    label_names (`list[str]`, *optional*):
        The classes an adapter was trained on, in logit order; `id2label` and `label2id` follow them.
    use_adapter (`bool`, *optional*, defaults to `False`):
        Whether the inter-view adapter sits between the CLIP view features and the normalisation.
    adapter_ratio, adapter_init, adapter_dropout (`float`, *optional*, default to 0.6, 0.5 and 0.075):
        The adapter's residual mix, the initial per-view fusion weight and its dropout (PointCLIP's values).
    use_cache_head (`bool`, *optional*, defaults to `False`):
        Whether the model has a cache head (Tip-Adapter): the fused features of few-shot support clouds as keys,
        their one-hot labels as values, `alpha * exp(-beta * (1 - f @ keys.T)) @ values` added to the logits. Built
        by `model.build_cache(...)`; it needs `label_names` (the values' column order).
    cache_size (`int`, *optional*):
        The number of cached support clouds (the keys); set by `build_cache`.
    cache_alpha, cache_beta (`float`, *optional*, default to 1.0 and 1.0):
        The cache's residual weight and affinity sharpness (Tip-Adapter's `alpha` and `beta`), searched on a
        validation split by `build_cache`.
    cache_info (`dict`, *optional*):
        How the cache was built (shots, seed, validation split and search, fine-tuning), for the model card.
    label_smoothing (`float`, *optional*, defaults to 0.2):
        DGCNN-style label smoothing of the training loss (PointCLIP's recipe).
    max_images_per_batch (`int`, *optional*):
        Depth images per call of the CLIP image tower, rounded down to whole clouds (at least one), at most
        `MAX_IMAGES_PER_BATCH` (1024). By default one cloud per call on CPU and 128 images on accelerators. Every call
        has the same shape (the last one is padded with blank clouds), so a cloud's results never depend on the rest
        of its batch, and even one cloud costs a whole call.
    """

    _auto_class = "AutoConfig"  # save_pretrained writes it into the auto_map

    model_type = "pointclip"
    sub_configs_defaults = {"clip_config": CLIPConfig}

    clip_config: dict | CLIPConfig | None = None
    clip_model_name_or_path: str | None = "openai/clip-vit-base-patch16"
    clip_revision: str | None = None
    projection_style: str = "pointclip_v1"
    num_views: int | None = None
    view_weights: list[float | int] | None = None
    prompt_templates: list[str] | None = None
    class_prompts: dict[str, list[str]] | None = None
    label_names: list[str] | None = None
    use_adapter: bool = False
    adapter_ratio: float | int = 0.6
    adapter_init: float | int = 0.5
    adapter_dropout: float | int = 0.075
    use_cache_head: bool = False
    cache_size: int | None = None
    cache_alpha: float | int = 1.0
    cache_beta: float | int = 1.0
    cache_info: dict | None = None
    label_smoothing: float | int = 0.2
    max_images_per_batch: int | None = None

    def __post_init__(self, **kwargs):
        style = get_projection_style(self.projection_style)
        if self.num_views is None:
            self.num_views = style.num_views
        if self.prompt_templates is None:
            self.prompt_templates = list(DEFAULT_TEMPLATES[self.projection_style])
        if self.view_weights is not None:
            self.view_weights = [float(w) for w in self.view_weights]
        super().__post_init__(**kwargs)
        if self.label_names is not None:
            self.id2label = dict(enumerate(self.label_names))
            self.label2id = {name: index for index, name in enumerate(self.label_names)}

    def validate_fields(self):
        problem = next((message for failed, message in self._field_checks() if failed), None)
        if problem:
            raise ValueError(problem)
        for template in self.prompt_templates:
            check_prompt_template(template, object_field=self.projection_style == PART_SEGMENTATION_STYLE)
        if self.label_names is not None:
            check_labels(self.label_names)

    def _field_checks(self):
        """(failed, message) of each field check, in order: each is evaluated only when those before it passed. `not
        low <= x <= high` also fails for NaN."""
        style = get_projection_style(self.projection_style)
        yield (
            self.num_views != style.num_views,
            f"num_views={self.num_views} does not match projection_style {self.projection_style!r}, which renders "
            f"{style.num_views} views.",
        )
        weights = self.view_weights
        if weights is not None:
            yield len(weights) != self.num_views, f"view_weights has {len(weights)} entries for {self.num_views} views."
            yield (
                not all(0.0 <= w <= MAX_VIEW_WEIGHT for w in weights),
                f"view_weights must be finite, non-negative and at most {MAX_VIEW_WEIGHT:g} (larger ones overflow the "
                f"logits), got {weights}.",
            )
            yield (
                max(weights) < MIN_LARGEST_VIEW_WEIGHT,
                f"view_weights are all zero or below {MIN_LARGEST_VIEW_WEIGHT:g} (they scale the logits: every label "
                f"would score the same), got {weights}.",
            )
        yield not self.prompt_templates, "prompt_templates must hold at least one template."
        for name, sentences in (self.class_prompts or {}).items():
            yield not sentences, f"class_prompts[{name!r}] is empty."
        yield not 0.0 <= self.adapter_ratio <= 1.0, f"adapter_ratio must lie in [0, 1], got {self.adapter_ratio}."
        yield not 0.0 <= self.adapter_dropout < 1.0, f"adapter_dropout must lie in [0, 1), got {self.adapter_dropout}."
        yield not 0.0 <= self.label_smoothing < 1.0, f"label_smoothing must lie in [0, 1), got {self.label_smoothing}."
        yield (
            self.max_images_per_batch is not None and not 1 <= self.max_images_per_batch <= MAX_IMAGES_PER_BATCH,
            f"max_images_per_batch must be at least 1 and at most {MAX_IMAGES_PER_BATCH} (every image-tower call is "
            f"padded to this size), got {self.max_images_per_batch}.",
        )
        for name in ("cache_alpha", "cache_beta"):
            value = getattr(self, name)
            yield not 0.0 <= value < float("inf"), f"{name} must be a finite, non-negative number, got {value}."
        if self.use_cache_head:
            yield not self.label_names, "use_cache_head=True needs label_names: the cache's values follow them."
            yield (
                self.cache_size is None or self.cache_size < 1,
                f"use_cache_head=True needs cache_size >= 1 (cached clouds), got {self.cache_size}.",
            )

    @property
    def custom_pipelines(self) -> dict:
        """The pipelines a Hub repo's own code provides (saved in `config.json`, read by `pipeline(...,
        trust_remote_code=True)`). Tasks that an installed `pointclip_hf` registered are left out, so that
        `pipeline(...)` runs the installed code without asking for `trust_remote_code`."""
        from transformers.pipelines import PIPELINE_REGISTRY

        stored = self.__dict__.get("custom_pipelines") or {}
        registered = set(PIPELINE_REGISTRY.get_supported_tasks())
        return {task: info for task, info in stored.items() if task not in registered}

    @custom_pipelines.setter
    def custom_pipelines(self, value: dict) -> None:
        self.__dict__["custom_pipelines"] = value

    @property
    def embed_dim(self) -> int:
        """Width C of CLIP's joint embedding space."""
        return self.clip_config.projection_dim


@strict
class PointCLIPPartSegmentationConfig(PointCLIPConfig):
    r"""
    Configuration of a [`PointCLIPForZeroShotPartSegmentation`]: the fields of [`PointCLIPConfig`], with
    `projection_style` defaulting to `"pointclip_v2_part_segmentation"` (PointCLIP V2's denser part-segmentation
    views) and prompt templates that name the object (`{object}`) as well as the part (`{}`). Its own `model_type`
    lets `AutoModel.from_pretrained` find the part-segmentation model.
    """

    model_type = "pointclip_part_segmentation"

    projection_style: str = PART_SEGMENTATION_STYLE


def config_class_for(config_dict: dict) -> type[PointCLIPConfig]:
    r"""
    The config class of a PointCLIP config: by its `model_type`, and configs saved before part segmentation had its own
    `model_type` (`"pointclip"` with the part-segmentation projection) as part segmentation.

    Args:
        config_dict (`dict`):
            The config as a dictionary (a parsed `config.json`).
    """
    is_parts = config_dict.get("model_type") == PointCLIPPartSegmentationConfig.model_type
    if is_parts or config_dict.get("projection_style") == PART_SEGMENTATION_STYLE:
        return PointCLIPPartSegmentationConfig
    return PointCLIPConfig


def with_own_config_class(config: PointCLIPConfig) -> PointCLIPConfig:
    """`config` as an instance of its [`config_class_for`] (a copy when its class differs, e.g. a part-segmentation
    config saved with the old `model_type`), so that it saves with the right `model_type`."""
    config_class = config_class_for(config.to_dict())
    if type(config) is config_class:
        return config
    fields = {key: value for key, value in config.to_dict().items() if key != "model_type"}
    return config_class.from_dict(fields)


__all__ = ["PointCLIPConfig", "PointCLIPPartSegmentationConfig", "config_class_for", "with_own_config_class"]
