"""
Embeddings for retrieval: unit vectors of point clouds and of texts in one space, whose inner product is the zero-shot
logit divided by the cloud's logit scale.

A cloud's embedding is its point-cloud embedding (`PointCLIPModel.get_point_cloud_embeds`: per-view normalisation or
the adapter, then the view weights) flattened to `views * C` values and normalised. A text's embedding is its label
embedding (the model's prompts, as in classification) repeated once per view and normalised. Then, for every
projection, with or without an adapter,

    cloud.embeds @ text_embeds.T == logits / cloud.logit_scale[:, None]

where `logits` are `PointCLIPModel.forward`'s and `cloud.logit_scale = exp(model.logit_scale) * ||flattened point-cloud
embedding||`: the same for every cloud of a model without adapter (`sqrt(sum of squared view weights)`), and
`exp(logit_scale)` for an adapter without view weights. Ranking clouds for a text by this inner product is cosine
similarity in the joint space; ranking texts for a cloud gives the zero-shot ranking.

Because a text's vector repeats one `C`-wide block, its inner product with a cloud only needs the cloud's views summed
(`pooled_for_text_search`): text search runs on `C` values per cloud, search by example on all `views * C`.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .argument_checks import check_counts
from .cloud_stream import ArraySource, stream_batches
from .model.feature_extraction_pointclip import is_single_point_cloud
from .model.pipeline_pointclip import label_embeddings
from .model.processing_pointclip import processor_for_model


@dataclass
class PointCloudEmbeddings:
    """
    Unit embeddings of point clouds.

    Args:
        embeds (`torch.Tensor` of shape `(batch, views * C)`):
            One unit vector per cloud.
        logit_scale (`torch.Tensor` of shape `(batch,)`):
            `exp(model.logit_scale) * ||point-cloud embedding||`: `embeds @ text_embeds.T * logit_scale[:, None]`
            are the model's zero-shot logits.
    """

    embeds: torch.Tensor
    logit_scale: torch.Tensor


def embeddings_from_view_features(model, view_features: torch.Tensor) -> PointCloudEmbeddings:
    """
    The unit embeddings of clouds from their CLIP view features (as `model.get_view_features` or
    `pointclip_hf.encode_dataset` return them).

    Args:
        model ([`PointCLIPModel`]):
            Its adapter and view weights make the point-cloud embedding.
        view_features (`torch.Tensor` of shape `(batch, views, C)`):
            CLIP view features.

    Returns:
        [`PointCloudEmbeddings`]; each cloud's result does not depend on the rest of the batch.
    """
    flat = model.get_point_cloud_embeds(view_features).flatten(1).float()
    norms = flat.norm(dim=-1)
    if not torch.isfinite(norms).all() or bool((norms == 0).any()):
        raise ValueError("A point-cloud embedding is zero or not finite (all view weights zero, or broken features).")
    scale = model.clip.logit_scale.exp().float().to(norms.device)
    return PointCloudEmbeddings(embeds=flat / norms[:, None], logit_scale=scale * norms)


def embed_point_clouds(model, point_clouds, *, processor=None, batch_size: int = 8) -> PointCloudEmbeddings:
    """
    The unit embeddings of point clouds.

    Args:
        model ([`PointCLIPModel`]):
            The model, with any projection, adapter and view weights.
        point_clouds (`np.ndarray`, `torch.Tensor`, `str` or a list of them):
            One cloud of shape `(N, 3+)` or a file path, or several (a list or a `(B, N, 3)` array).
        processor ([`PointCLIPProcessor`], *optional*):
            Defaults to `processor_for_model(model)`.
        batch_size (`int`, *optional*, defaults to 8):
            Clouds rendered and encoded at a time (results do not depend on it).

    Returns:
        [`PointCloudEmbeddings`] with `embeds` of shape `(clouds, views * C)` on the model's device.
    """
    check_counts({"batch_size": batch_size})
    extractor = processor_for_model(model, processor).feature_extractor
    clouds = [point_clouds] if is_single_point_cloud(point_clouds) else list(point_clouds)
    if not clouds:
        raise ValueError("No point clouds given (empty list).")
    source = ArraySource(clouds, extractor, model.device)
    with torch.inference_mode():
        parts = [
            embeddings_from_view_features(model, model.get_view_features(batch.pixel_values))
            for batch in stream_batches(source, extractor, model.device, batch_size, num_workers=0)
        ]
    return PointCloudEmbeddings(torch.cat([p.embeds for p in parts]), torch.cat([p.logit_scale for p in parts]))


def embed_texts(model, texts, *, processor=None, prompt_templates=None) -> torch.Tensor:
    """
    The unit embeddings of texts, in the space of [`embed_point_clouds`].

    Args:
        model ([`PointCLIPModel`]):
            Its text tower, prompts and number of views.
        texts (`str` or `list[str]`):
            Texts, used as labels are in classification: put into the model's prompt templates.
        processor ([`PointCLIPProcessor`], *optional*):
            Defaults to `processor_for_model(model)`.
        prompt_templates (`list[str]`, *optional*):
            Templates instead of the model's (e.g. `["{}"]` to embed the texts as they are).

    Returns:
        `torch.Tensor` of shape `(texts, views * C)` on the model's device.
    """
    texts = [texts] if isinstance(texts, str) else texts
    processor = processor_for_model(model, processor)
    with torch.inference_mode():
        label_embeds = label_embeddings(model, processor, texts, prompt_templates=prompt_templates)
    return text_embeddings_from_label_embeds(label_embeds.float(), model.config.num_views)


def text_embeddings_from_label_embeds(label_embeds: torch.Tensor, num_views: int) -> torch.Tensor:
    """Unit label embeddings `(texts, C)` repeated once per view: `(texts, num_views * C)`, unit."""
    return F.normalize(label_embeds, dim=-1).repeat(1, num_views) / math.sqrt(num_views)


def pooled_for_text_search(embeds: torch.Tensor, num_views: int) -> torch.Tensor:
    """
    Cloud embeddings summed over views: `pooled @ label_embeds.T == embeds @ text_embeds.T` for unit label
    embeddings, with `views` times fewer values.

    Args:
        embeds (`torch.Tensor` of shape `(clouds, views * C)`):
            Unit cloud embeddings.
        num_views (`int`):
            The model's number of views.

    Returns:
        `torch.Tensor` of shape `(clouds, C)`.
    """
    return embeds.reshape(len(embeds), num_views, -1).sum(dim=1) / math.sqrt(num_views)


__all__ = [
    "PointCloudEmbeddings",
    "embed_point_clouds",
    "embed_texts",
    "embeddings_from_view_features",
    "pooled_for_text_search",
    "text_embeddings_from_label_embeds",
]
