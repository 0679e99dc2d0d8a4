"""`build_few_shot_model`: a PointCLIP with a fresh inter-view adapter, ready for `train_adapter`."""

import os

import torch
from transformers import CLIPConfig

from ..model.configuration_pointclip import PointCLIPConfig
from ..model.modeling_pointclip import PointCLIPModel
from ..model.pipeline_pointclip import label_embeddings
from ..model.processing_pointclip import processor_for_model
from ..model.prompts import check_labels


def build_few_shot_model(
    clip_model_name_or_path,
    label_names,
    projection_style: str = "pointclip_v1_fewshot",
    *,
    seed: int | None = None,
    dtype: torch.dtype | str | None = None,
    processor=None,
    sampling: str | None = None,
    up_axis: str | None = None,
    **config_overrides,
) -> PointCLIPModel:
    """
    A PointCLIP with a freshly initialised inter-view adapter for `label_names`, on top of the CLIP checkpoint
    `clip_model_name_or_path`.

    Args:
        clip_model_name_or_path (`str` or `os.PathLike`):
            The base CLIP, a Hub id or a local folder; recorded as `config.clip_model_name_or_path`.
        label_names (`list[str]`):
            The classes, in logit order.
        projection_style (`str`, *optional*, defaults to `"pointclip_v1_fewshot"`):
            `"pointclip_v1_fewshot"` (10 views, the reference) or another style of `pointclip_hf`.
        seed (`int`, *optional*):
            Seed of the adapter's initialisation (the global RNG state is left untouched); `None` draws from the
            global RNG.
        dtype (`torch.dtype` or `str`, *optional*):
            Dtype of CLIP (e.g. `torch.bfloat16`); the adapter is always fp32.
        processor ([`PointCLIPProcessor`], *optional*):
            Attached as `model.processor`; by default one is built from the config and the base CLIP's tokenizer.
        sampling (`str`, *optional*), up_axis (`str`, *optional*):
            Point settings of that default processor (see [`PointCLIPFeatureExtractor`]).
        **config_overrides:
            Further [`PointCLIPConfig`] settings (`prompt_templates`, `adapter_ratio`, ...). The prompt templates
            default to the projection style's.

    Returns:
        [`PointCLIPModel`] with `config.use_adapter=True`, CLIP frozen, and the label embeddings of `label_names`
        stored, so that `model(pixel_values=..., labels=...)` works without text inputs (as `Trainer` calls it).
    """
    labels = check_labels(label_names)
    source = os.fspath(clip_model_name_or_path)
    config = PointCLIPConfig(
        clip_config=CLIPConfig.from_pretrained(source),
        clip_model_name_or_path=source,
        use_adapter=True,
        label_names=labels,
        projection_style=projection_style,
        **config_overrides,
    )
    load_kwargs = {} if dtype is None else {"dtype": dtype}
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = PointCLIPModel.from_pretrained(source, config=config, sampling=sampling, up_axis=up_axis, **load_kwargs)
    model.adapter.float()
    model.processor = processor_for_model(model, processor)
    model.set_label_text_embeds(label_embeddings(model, model.processor, labels))
    return model


__all__ = ["build_few_shot_model"]
