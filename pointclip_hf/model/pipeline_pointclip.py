"""The `"point-cloud-zero-shot-classification"` pipeline: clouds and candidate labels in, ranked labels out. It owns the
inference conveniences: batching, the label-embedding cache, prompts, top-k and the label rules."""

import weakref

import numpy as np
import torch
from transformers import Pipeline

from .feature_extraction_pointclip import check_no_missing_clouds, is_single_point_cloud, to_point_batch
from .modeling_pointclip import check_finite_logits, check_scores_discriminate
from .processing_pointclip import PointCLIPProcessor, processor_for_model
from .prompts import check_labels, check_labels_fit_model, check_prompt_template

PIPELINE_TASK = "point-cloud-zero-shot-classification"
DEFAULT_CHECKPOINT = "openai/clip-vit-base-patch16"
CUSTOM_PIPELINES = {
    PIPELINE_TASK: {
        "impl": "pipeline_pointclip.PointCloudZeroShotClassificationPipeline",
        "pt": ["AutoModel"],
        "tf": [],
        "type": "multimodal",
        "default": {"model": [DEFAULT_CHECKPOINT, "main"]},
    }
}
# Label sets whose embeddings are kept per model, the oldest dropped first: enough for a session that switches between
# a few label lists, at a few KB each (labels x embedding width).
LABEL_SETS_CACHED_PER_MODEL = 8
_LABEL_EMBEDDINGS = weakref.WeakKeyDictionary()


def label_embeddings(model, processor: PointCLIPProcessor, labels, prompt_templates=None) -> torch.Tensor:
    r"""
    Normalised text embeddings of `labels` with the model's prompts, cached per model (the last
    `LABEL_SETS_CACHED_PER_MODEL` label sets). The cache key holds the labels, the templates, their per-class sentences,
    the tokenizer (itself, so that its identity cannot pass to another one while the entry lives) and the state of every
    text-tower weight ([`_text_weights_state`]), so a change of any of them is never served stale. A label's
    embedding depends only on its own sentences (see
    [`~PointCLIPPreTrainedModel.get_text_features`]).

    Args:
        model ([`PointCLIPModel`]):
            The model whose text tower encodes the prompts.
        processor ([`PointCLIPProcessor`]):
            Its tokenizer turns the prompts into tokens.
        labels (`list[str]`):
            Candidate labels.
        prompt_templates (`list[str]`, *optional*):
            Templates to use instead of `model.config.prompt_templates`.

    Returns:
        `torch.Tensor` of shape `(labels, C)` on the model's device.
    """
    labels = check_labels(labels)
    templates = tuple(prompt_templates or model.config.prompt_templates)
    class_prompts = model.config.class_prompts
    key = (
        tuple(labels),
        templates,
        tuple(sorted((name, tuple(sentences)) for name, sentences in (class_prompts or {}).items())),
        processor.tokenizer,
        _text_weights_state(model),
    )
    cache = _LABEL_EMBEDDINGS.setdefault(model, {})
    if key not in cache:
        tokens = label_tokens(model, processor, labels, list(templates))
        with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable later in training graphs
            embeds = model.get_text_features(**tokens)
        if len(cache) >= LABEL_SETS_CACHED_PER_MODEL:
            cache.pop(next(iter(cache)))
        cache[key] = embeds
    return cache[key]


def label_tokens(model, processor: PointCLIPProcessor, labels, prompt_templates=None) -> dict:
    r"""
    The tokens of the prompts of `labels` that [`label_embeddings`] encodes, on the model's device; labels whose prompts
    give the same tokens are refused here.

    Args:
        model ([`PointCLIPModel`]):
            The model whose prompt templates, class prompts and context length apply.
        processor ([`PointCLIPProcessor`]):
            Its tokenizer turns the prompts into tokens.
        labels (`list[str]`):
            Candidate labels.
        prompt_templates (`list[str]`, *optional*):
            Templates to use instead of `model.config.prompt_templates`.

    Returns:
        `dict`: as [`PointCLIPProcessor.tokenize_labels`] returns it.
    """
    labels = check_labels(labels)
    templates = list(prompt_templates or model.config.prompt_templates)
    max_length = model.config.clip_config.text_config.max_position_embeddings
    return processor.tokenize_labels(
        labels, templates, model.config.class_prompts, max_length=max_length, device=model.device
    )


def model_label_order(model, labels: list[str]) -> tuple[list[str], list[int] | None]:
    r"""
    The labels to score and, when they differ from `labels`, the logit column of each given label. A model with a
    cache head scores its `config.label_names` in their order (the order of the cache's values); other models score
    the labels as given.

    Args:
        model ([`PointCLIPModel`]):
            The model.
        labels (`list[str]`):
            Checked candidate labels (for a cache model, its `config.label_names` in any order).

    Returns:
        `tuple[list[str], list[int] | None]`: the labels to embed, and the columns that put their logits in the order
        of `labels` (`None`: already in that order).
    """
    if getattr(model, "cache", None) is None or list(labels) == list(model.config.label_names):
        return list(labels), None
    scored = list(model.config.label_names)
    return scored, [scored.index(label) for label in labels]


def _text_weights_state(model) -> tuple:
    """What identifies the text tower's weights without hashing them: per tensor its storage address, its in-place
    change counter (`_version`), dtype and device; replacing, moving, casting or changing a weight in place changes
    it."""
    parameters = [*model.clip.text_model.parameters(), *model.clip.text_projection.parameters()]
    return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in parameters)


def scores_to_predictions(logits: torch.Tensor, labels: list[str], top_k: int | None) -> list[list[dict]]:
    r"""
    Turn logits into ranked predictions.

    Args:
        logits (`torch.Tensor` of shape `(batch, labels)`):
            Class scores.
        labels (`list[str]`):
            The label of each column.
        top_k (`int`, *optional*):
            How many labels to keep (all by default).

    Returns:
        `list[list[dict]]`: per cloud, `{"label", "score"}` dicts sorted by softmax score.
    """
    values, indices = top_k_scores(logits, min(top_k or len(labels), len(labels)))
    return [ranked_labels(labels, ids, scores) for ids, scores in zip(indices.tolist(), values.tolist())]


def top_k_scores(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    The `k` best softmax scores of each row of `logits` and their columns, best first.

    Args:
        logits (`torch.Tensor` of shape `(batch, labels)`):
            Class scores.
        k (`int`):
            How many to keep, at most `labels`.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: the scores (fp32) and the label ids, each of shape `(batch, k)`.
    """
    return logits.float().softmax(dim=-1).topk(k, dim=-1)


def ranked_labels(labels: list[str], ids: list[int], scores: list[float]) -> list[dict]:
    r"""
    One cloud's ranked predictions, as the pipeline returns them.

    Args:
        labels (`list[str]`):
            The label of each column.
        ids (`list[int]`), scores (`list[float]`):
            The ranked label ids and their scores (one row of [`top_k_scores`]).

    Returns:
        `list[dict]`: `{"label", "score"}` per ranked label.
    """
    return [{"label": labels[i], "score": s} for i, s in zip(ids, scores)]


def check_top_k(top_k) -> int | None:
    """Raise unless `top_k` is `None` or a positive integer."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}.")
    return top_k


def check_no_unknown_arguments(pipeline, unknown: dict) -> None:
    """Raise a `TypeError` naming the `unknown` arguments a call of `pipeline` got."""
    if unknown:
        raise TypeError(f"{type(pipeline).__name__} got unexpected arguments {sorted(unknown)}.")


def check_hypothesis_template(template: str) -> list[str]:
    """Raise unless `template` is a string with exactly one `{}` for the label."""
    return [check_prompt_template(template, "hypothesis_template")]


class PointCLIPPipeline(Pipeline):
    """What the PointCLIP pipelines share: the processor that belongs to the model, and its feature extractor and
    tokenizer handed to transformers' batching."""

    _load_processor = False
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False

    def __init__(self, model, processor: PointCLIPProcessor | None = None, **kwargs):
        for component in ("tokenizer", "feature_extractor", "image_processor", "video_processor"):
            kwargs.pop(component, None)
        processor = processor_for_model(model, processor)
        check_scores_discriminate(model)
        super().__init__(
            model=model,
            processor=processor,
            tokenizer=processor.tokenizer,
            feature_extractor=processor.feature_extractor,
            **kwargs,
        )

    def __call__(self, point_clouds, **kwargs):
        """One cloud (an `(N, 3+)` array, tensor, nested list or file path) gives one result; a list of clouds or a
        `(B, N, 3+)` array gives one result per cloud."""
        if isinstance(point_clouds, (np.ndarray, torch.Tensor)) and point_clouds.ndim == 3:
            check_no_missing_clouds(point_clouds)
            point_clouds = list(point_clouds)
        elif isinstance(point_clouds, (list, tuple)) and is_single_point_cloud(point_clouds):
            point_clouds = to_point_batch(point_clouds)[0]
        elif isinstance(point_clouds, (list, tuple)):
            check_no_missing_clouds(point_clouds)
        return super().__call__(point_clouds, **kwargs)


class PointCloudZeroShotClassificationPipeline(PointCLIPPipeline):
    r"""
    Zero-shot point-cloud classification with a [`PointCLIPModel`]: the point-cloud counterpart of
    `zero-shot-image-classification`.

    ```python
    >>> from transformers import pipeline
    >>> classifier = pipeline("point-cloud-zero-shot-classification", model="openai/clip-vit-base-patch16")
    >>> classifier("chair.ply", candidate_labels=["chair", "table", "lamp"])
    [{'label': 'chair', 'score': ...}, ...]
    ```

    A cloud is an `(N, 3+)` array or tensor, or a file path; a list of clouds or an `(B, N, 3)` array gives one result
    per cloud. Models with a trained adapter default to, and only accept, their own `config.label_names`.

    Args:
        model ([`PointCLIPModel`]):
            The model.
        processor ([`PointCLIPProcessor`], *optional*):
            Defaults to the processor saved with the model, loaded with the same Hub arguments (revision, token, ...),
            or one built from the model's config and its base CLIP's tokenizer.
    """

    def __call__(self, point_clouds, **kwargs):
        r"""
        Classify one point cloud or several.

        Args:
            point_clouds (`np.ndarray`, `torch.Tensor`, `str`, or a list of them):
                One cloud of shape `(N, 3+)` or a file path; or a list of them, or an array of shape `(B, N, 3+)`.
            candidate_labels (`list[str]` or `str`, *optional*):
                The labels (a comma-separated string works too); defaults to `model.config.label_names`.
            hypothesis_template (`str`, *optional*):
                One template with `{}` for the label, used instead of the model's prompt templates.
            top_k (`int`, *optional*):
                How many labels to return per cloud (all by default).
            batch_size (`int`, *optional*, defaults to 1):
                Clouds rendered and encoded at once; results do not depend on it.

        Returns:
            For one cloud a list of `{"label", "score"}` sorted by score; for several, one such list per cloud.
        """
        return super().__call__(point_clouds, **kwargs)

    def _sanitize_parameters(self, candidate_labels=None, hypothesis_template=None, top_k=None, **unknown):
        check_no_unknown_arguments(self, unknown)
        forward_params, postprocess_params = {}, {}
        if candidate_labels is not None:
            labels = check_labels(candidate_labels)
            check_labels_fit_model(labels, self.model.config.label_names)
            forward_params["candidate_labels"] = postprocess_params["candidate_labels"] = labels
        if hypothesis_template is not None:
            forward_params["prompt_templates"] = check_hypothesis_template(hypothesis_template)
        if top_k is not None:
            postprocess_params["top_k"] = check_top_k(top_k)
        return {}, forward_params, postprocess_params

    def _default_labels(self) -> list[str]:
        if self.model.config.label_names is None:
            raise ValueError("Give candidate_labels: this model has no trained label_names to default to.")
        return list(self.model.config.label_names)

    def preprocess(self, point_cloud):
        return {"points": self.feature_extractor.prepare_points(point_cloud)}

    def _forward(self, model_inputs, candidate_labels=None, prompt_templates=None):
        scored, columns = model_label_order(self.model, candidate_labels or self._default_labels())
        text_embeds = label_embeddings(self.model, self.processor, scored, prompt_templates)
        pixel_values = self.feature_extractor.render(model_inputs["points"].to(self.model.device))
        logits = self.model(pixel_values=pixel_values, text_embeds=text_embeds).logits
        return {"logits": logits if columns is None else logits[:, columns]}

    def postprocess(self, model_outputs, candidate_labels=None, top_k=None):
        labels = candidate_labels or self._default_labels()
        check_finite_logits(model_outputs["logits"], self.model, ["a point cloud"])
        return scores_to_predictions(model_outputs["logits"], labels, top_k)[0]


__all__ = ["PointCloudZeroShotClassificationPipeline", "label_embeddings", "scores_to_predictions"]
