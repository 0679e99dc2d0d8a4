"""PointCLIP: CLIP's image tower on multi-view depth maps, views combined into one point-cloud embedding, compared with
CLIP text embeddings of prompts (spec 2.5, 3.2, 4.6)."""

import math
import os
import tempfile
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .adapter_weights import adapter_state_dict, load_adapter_into, load_adapter_state_dict
from .configuration_pointclip import PointCLIPConfig
from .inter_view_adapter import InterViewAdapter
from .processing_pointclip import PointCLIPProcessor, is_single_point_cloud
from .prompts import build_prompts, check_labels

POINTCLIP_CONFIG_FIELDS = set(PointCLIPConfig.__dataclass_fields__) - set(PreTrainedConfig.__dataclass_fields__)
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


@dataclass
class PointCLIPOutput(ModelOutput):
    """
    loss: label-smoothed cross-entropy, when `labels` are given.
    logits: `[batch, K]` class scores.
    view_features: `[batch, views, C]` CLIP image embeddings of the views (before any normalisation).
    point_cloud_embeds: `[batch, views, C]` the combined point-cloud embedding, one block per view (normalised and
        view-weighted; flatten it for the `[batch, views * C]` vector of the reference).
    text_embeds: `[K, C]` normalised label embeddings.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    view_features: torch.FloatTensor | None = None
    point_cloud_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


def project_rows(features: torch.Tensor, projection: torch.nn.Linear) -> torch.Tensor:
    r"""
    CLIP's final projection (a bias-free linear layer) with row results that do not depend on the thread count. CPU
    matrix kernels split the reduction across threads when a call has few rows, which changes the last bits; in
    float64 every order of the sum rounds to the same float32 result, at a negligible cost for these few rows.

    Args:
        features (`torch.Tensor` of shape `(rows, hidden)`):
            Pooled tower outputs.
        projection (`torch.nn.Linear`):
            `visual_projection` or `text_projection`.

    Returns:
        `torch.Tensor` of shape `(rows, C)` in the dtype of `features`.
    """
    if features.device.type != "cpu":
        return projection(features)
    return (features.double() @ projection.weight.double().T).to(features.dtype)


def smooth_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """DGCNN-style label smoothing as PointCLIP trains: target `1 - eps` on the class, `eps / (K - 1)` elsewhere."""
    num_classes = logits.shape[-1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"Labels must lie in [0, {num_classes}), got values from {labels.min()} to {labels.max()}.")
    if smoothing == 0 or num_classes == 1:
        return F.cross_entropy(logits, labels)
    target = torch.full_like(logits, smoothing / (num_classes - 1))
    target.scatter_(1, labels[:, None], 1.0 - smoothing)
    return -(target * logits.log_softmax(dim=-1)).sum(dim=-1).mean()


class PointCLIPPreTrainedModel(PreTrainedModel):
    config: PointCLIPConfig
    base_model_prefix = "clip"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _no_split_modules = ["CLIPEncoderLayer", "CLIPTextEmbeddings", "CLIPVisionEmbeddings"]
    _keys_to_ignore_on_load_missing = [r"^adapter\."]
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, InterViewAdapter):  # children come first: give its layers PyTorch's default init
            init.constant_(module.view_fusion_weights, module.init)
            for linear in (module.global_proj, module.view_mlp_in, module.view_mlp_out):
                init.kaiming_uniform_(linear.weight, a=math.sqrt(5))
                bound = 1.0 / math.sqrt(linear.in_features)
                init.uniform_(linear.bias, -bound, bound)


class PointCLIPModel(PointCLIPPreTrainedModel):
    r"""
    Zero-shot and few-shot point-cloud classification with CLIP.

    `pixel_values` `[batch, views, 3, S, S]` (from [`PointCloudProcessor`]) go through CLIP's image tower one image per
    view, giving `view_features` `[batch, views, C]`. Without adapter each view is L2-normalised; with the
    inter-view adapter the adapted features are normalised over all `views * C` values. Each block is then scaled by
    its view weight. Logits are `logit_scale / sqrt(views) * sum_v <embed_v, text_k>`, exactly the reference's
    `logit_scale * [views * C] @ normalize(text.repeat(views)).T`.

    Load a trained model with `PointCLIPModel.from_pretrained("user/repo")`, a zero-shot one from any CLIP checkpoint
    with `PointCLIPModel.from_pretrained("openai/clip-vit-base-patch16")`, and classify with `model.classify(...)`.
    """

    def __init__(self, config: PointCLIPConfig):
        super().__init__(config)
        self.clip = CLIPModel(config.clip_config)
        self.adapter = (
            InterViewAdapter(
                config.num_views,
                config.embed_dim,
                ratio=config.adapter_ratio,
                init=config.adapter_init,
                dropout=config.adapter_dropout,
            )
            if config.use_adapter
            else None
        )
        self._processor = None
        self._text_cache = {}
        self.post_init()

    # ------------------------------------------------------------------ features

    def get_view_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        r"""
        CLIP image embeddings of every view. Each call of the image tower holds a fixed number of whole clouds (one on
        CPU, `max_images_per_batch // views` on accelerators, the last call padded with blank clouds whose outputs are
        dropped), so a cloud's features never depend on the other clouds of the batch.

        Args:
            pixel_values (`torch.Tensor` of shape `(batch, views, 3, S, S)`):
                Depth images from [`PointCloudProcessor`].

        Returns:
            `torch.Tensor` of shape `(batch, views, C)`: the projected, unnormalised view embeddings.
        """
        if pixel_values.ndim != 5 or pixel_values.shape[2] != 3:
            raise ValueError(f"pixel_values must be [batch, views, 3, S, S], got shape {tuple(pixel_values.shape)}.")
        batch, views = pixel_values.shape[:2]
        if views != self.config.num_views:
            raise ValueError(
                f"pixel_values hold {views} views but this model ({self.config.projection_style}) expects "
                f"{self.config.num_views}: the processor and the model use different projections."
            )
        clouds = pixel_values.to(device=self.device, dtype=self.dtype)
        clouds_per_call = self.clouds_per_tower_call()
        padding = -batch % clouds_per_call
        if padding:
            clouds = torch.cat([clouds, clouds.new_zeros(padding, *clouds.shape[1:])])
        features = [self._encode_images(group.flatten(0, 1)) for group in clouds.split(clouds_per_call)]
        return torch.cat(features).reshape(batch + padding, views, -1)[:batch]

    def clouds_per_tower_call(self) -> int:
        """Whole clouds per image-tower call: `config.max_images_per_batch // num_views` (at least 1) when set, else one
        cloud on CPU (no padding, and CPU kernels gain nothing from bigger calls) and 128 images' worth elsewhere."""
        max_images = self.config.max_images_per_batch or (self.config.num_views if self.device.type == "cpu" else 128)
        return max(1, max_images // self.config.num_views)

    def _encode_images(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.clip.vision_model(pixel_values=images).pooler_output
        return project_rows(pooled, self.clip.visual_projection)

    def get_point_cloud_embeds(self, view_features: torch.Tensor, apply_view_weights: bool = True) -> torch.Tensor:
        r"""
        Combine the views into the point-cloud embedding: the adapter (or per-view normalisation), then view weights.
        This is where the views become one embedding. Outside adapter training each cloud is computed on its own, so
        its embedding does not depend on the batch.

        Args:
            view_features (`torch.Tensor` of shape `(batch, views, C)`):
                CLIP view embeddings from [`~PointCLIPModel.get_view_features`].
            apply_view_weights (`bool`, *optional*, defaults to `True`):
                Whether to scale each view's block by `config.view_weights`.

        Returns:
            `torch.Tensor` of shape `(batch, views, C)`: one block per view of the embedding (flatten it for the
            reference's `(batch, views * C)` vector).
        """
        if self.adapter is not None:
            adapted = self._adapt(view_features.to(self.adapter.view_fusion_weights.dtype))
            embeds = adapted / adapted.flatten(1).norm(dim=-1).clamp_min(1e-12)[:, None, None]
        else:
            embeds = F.normalize(view_features, dim=-1)
        if apply_view_weights and self.config.view_weights is not None:
            weights = torch.tensor(self.config.view_weights, dtype=embeds.dtype, device=embeds.device)
            embeds = embeds * weights[:, None]
        return embeds

    def _adapt(self, view_features: torch.Tensor) -> torch.Tensor:
        if self.adapter.training:  # batch statistics: a training step belongs to its batch
            return self.adapter(view_features)
        return torch.cat([self.adapter(cloud) for cloud in view_features.split(1)])

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        prompt_to_label: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        Normalised label embeddings from tokenised prompts: each sentence is encoded on its own (without its padding,
        so its embedding does not depend on the other sentences) and normalised; the sentences of a label are averaged
        and normalised again.

        Args:
            input_ids (`torch.Tensor` of shape `(prompts, length)`):
                Token ids of the prompt sentences.
            attention_mask (`torch.Tensor` of shape `(prompts, length)`, *optional*):
                1 for tokens, 0 for right padding.
            prompt_to_label (`torch.Tensor` of shape `(prompts,)`, *optional*):
                The label each sentence belongs to; by default one sentence per label.

        Returns:
            `torch.Tensor` of shape `(labels, C)`.
        """
        lengths = attention_mask.sum(-1).tolist() if attention_mask is not None else [input_ids.shape[1]] * len(input_ids)
        pooled = torch.cat(
            [self.clip.text_model(input_ids=ids[None, :length]).pooler_output for ids, length in zip(input_ids, lengths)]
        )
        sentence_embeds = F.normalize(project_rows(pooled, self.clip.text_projection), dim=-1)
        if prompt_to_label is not None:
            num_labels = int(prompt_to_label.max()) + 1
            summed = sentence_embeds.new_zeros(num_labels, sentence_embeds.shape[-1])
            sentence_embeds = summed.index_add_(0, prompt_to_label.to(sentence_embeds.device), sentence_embeds)
        return F.normalize(sentence_embeds, dim=-1)

    def get_label_embeddings(self, labels, processor: PointCLIPProcessor | None = None) -> torch.Tensor:
        """
        Normalised text embeddings `[K, C]` of `labels` with this model's prompt templates and class prompts.
        Cached per label set; the cache key holds the exact sentences and the identity, version, dtype and device of
        every text-tower weight, so a change of labels, prompts or weights is never served stale.
        """
        labels = check_labels(labels)
        sentences, owners = build_prompts(labels, self.config.prompt_templates, self.config.class_prompts)
        key = (tuple(sentences), tuple(owners), self._text_weights_state())
        if key not in self._text_cache:
            tokens = self.tokenize(sentences, processor)
            with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable later in training graphs
                embeds = self.get_text_features(**tokens, prompt_to_label=torch.tensor(owners, device=self.device))
            if len(self._text_cache) >= 8:
                self._text_cache.pop(next(iter(self._text_cache)))
            self._text_cache[key] = embeds
        return self._text_cache[key]

    def tokenize(self, sentences, processor: PointCLIPProcessor | None = None) -> dict:
        """Sentences -> `input_ids` / `attention_mask` `[P, L]` on the model's device, cut to its text context."""
        max_length = self.config.clip_config.text_config.max_position_embeddings
        return (processor or self.processor).tokenize(sentences, max_length=max_length, device=self.device)

    def _text_weights_state(self) -> tuple:
        parameters = [*self.clip.text_model.parameters(), *self.clip.text_projection.parameters()]
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in parameters)

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prompt_to_label: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        view_features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PointCLIPOutput:
        r"""
        pixel_values: `[batch, views, 3, S, S]` depth images; or give `view_features` `[batch, views, C]` directly
            (e.g. cached, for fast adapter training).
        input_ids / attention_mask / prompt_to_label: tokenised prompts `[P, L]`, `[P]`; or give `text_embeds` `[K, C]`.
        labels: `[batch]` class indices, for the loss.
        """
        if view_features is None:
            if pixel_values is None:
                raise ValueError("Give pixel_values or view_features.")
            view_features = self.get_view_features(pixel_values)
        if text_embeds is None:
            if input_ids is None:
                raise ValueError("Give input_ids (tokenised prompts) or text_embeds.")
            text_embeds = self.get_text_features(input_ids, attention_mask, prompt_to_label)
        else:
            text_embeds = F.normalize(text_embeds, dim=-1)
        embeds = self.get_point_cloud_embeds(view_features)
        if text_embeds.shape[-1] != embeds.shape[-1]:
            raise ValueError(f"text_embeds have width {text_embeds.shape[-1]}, the image features {embeds.shape[-1]}.")
        scale = self.clip.logit_scale.exp().to(embeds.dtype) / math.sqrt(embeds.shape[1])
        text_embeds = text_embeds.to(embeds.dtype)
        logits = scale * torch.cat([torch.einsum("bvc,kc->bk", cloud, text_embeds) for cloud in embeds.split(1)])
        loss = None
        if labels is not None:
            loss = smooth_cross_entropy(logits.float(), labels.to(logits.device), self.config.label_smoothing)
        return PointCLIPOutput(
            loss=loss, logits=logits, view_features=view_features, point_cloud_embeds=embeds, text_embeds=text_embeds
        )

    # ------------------------------------------------------------------ high-level API

    @property
    def processor(self) -> PointCLIPProcessor:
        """The processor saved beside this model, or one built from its config and its base CLIP's tokenizer."""
        if self._processor is None:
            self._processor = PointCLIPProcessor.for_model(self.config, self.name_or_path)
        return self._processor

    @processor.setter
    def processor(self, processor: PointCLIPProcessor):
        """Attach a processor; its projection must be the model's. Prompts always come from `model.config`."""
        if processor.feature_extractor.projection_style != self.config.projection_style:
            raise ValueError(
                f"The processor projects with {processor.feature_extractor.projection_style!r}, the model was built "
                f"for {self.config.projection_style!r}."
            )
        self._processor = processor

    def compile_image_tower(self, **compile_kwargs) -> "PointCLIPModel":
        """Opt in to `torch.compile` for CLIP's image tower, the part that dominates the cost; `compile_kwargs` go to
        `torch.compile` (e.g. `mode="max-autotune"`). Returns the model."""
        self.clip.vision_model.compile(**compile_kwargs)
        return self

    def set_view_weights(self, weights) -> None:
        """Set the per-view weights (e.g. from `pointclip_hf.search_view_weights`); they are saved with the config."""
        self.config.view_weights = [float(w) for w in weights]
        self.config.validate_views()

    @torch.inference_mode()
    def classify(self, point_clouds, labels, top_k: int | None = None, batch_size: int = 32, processor=None):
        """
        Classify one point cloud or a batch against candidate `labels`.

        Args:
            point_clouds: one cloud `[N, 3+]` or several (arrays, tensors, nested lists or file paths).
            labels: candidate class names (or a comma-separated string); with an adapter trained on
                `config.label_names`, these must be those names (in any order).
            top_k: keep the `top_k` best labels (all by default).
            batch_size: clouds rendered and encoded at once.

        Returns:
            For one cloud a list of `{"label", "score"}` sorted by score; for a batch, one such list per cloud.
        """
        labels = check_labels(labels)
        if self.config.label_names is not None and set(labels) != set(self.config.label_names):
            raise ValueError(
                f"This model's adapter was trained on the labels {self.config.label_names}; classify with those "
                f"labels (in any order), got {labels}."
            )
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        processor = processor or self.processor
        text_embeds = self.get_label_embeddings(labels, processor)
        single = is_single_point_cloud(point_clouds)
        clouds = [point_clouds] if single else list(point_clouds)
        if not clouds:
            raise ValueError("No point clouds given (empty list).")
        results = []
        for start in range(0, len(clouds), batch_size):
            pixel_values = processor.feature_extractor(clouds[start : start + batch_size], device=self.device)
            logits = self(pixel_values=pixel_values["pixel_values"], text_embeds=text_embeds).logits
            results.extend(scores_to_predictions(logits, labels, top_k))
        return results[0] if single else results

    # ------------------------------------------------------------------ saving and loading

    def save_pretrained(self, save_directory, state_dict: dict | None = None, **kwargs):
        """
        Save `config.json` and `model.safetensors`. The weights file holds only the adapter, in fp32, whatever
        `state_dict` a caller (such as `Trainer`) passes; the frozen CLIP is referenced by
        `config.clip_model_name_or_path`. Only when that is `None` are the CLIP weights stored too.
        """
        state_dict = state_dict if state_dict is not None else self.state_dict()
        if self.config.clip_model_name_or_path is not None:
            state_dict = adapter_state_dict(state_dict)
        return super().save_pretrained(save_directory, state_dict=state_dict, **kwargs)

    def push_to_hub(self, repo_id: str, *, processor=None, model_card=None, commit_message: str | None = None,
                    private: bool | None = None, token: str | bool | None = None, revision: str | None = None,
                    create_pr: bool = False, **card_kwargs):
        """
        Upload the adapter weights, config, processor and model card to `repo_id` in one commit. The card is ours
        (`pointclip_hf.model_card.build_model_card(self, repo_id=..., **card_kwargs)` unless `model_card` is given),
        never transformers' generic one.
        """
        from huggingface_hub import HfApi

        from .model_card import build_model_card

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            (processor or self.processor).save_pretrained(folder)
            card = model_card or build_model_card(self, repo_id=repo_id, **card_kwargs)
            card.save(os.path.join(folder, "README.md"))
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=commit_message or "Upload PointCLIP adapter",
                revision=revision,
                create_pr=create_pr,
            )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, clip_model_name_or_path=None, **kwargs):
        """
        Load a PointCLIP folder or Hub repo (its config, the base CLIP named by `config.clip_model_name_or_path` or the
        `clip_model_name_or_path` argument, then its adapter), or any plain CLIP checkpoint as a zero-shot PointCLIP
        (choose the projection and prompts with config fields, e.g. `projection_style="pointclip_v2"`, or a whole
        `config=PointCLIPConfig(...)`). Fails loudly when the CLIP or the
        adapter weights are missing or do not fit.
        """
        source = pretrained_model_name_or_path
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
        overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in POINTCLIP_CONFIG_FIELDS}
        config_dict, _ = PreTrainedConfig.get_config_dict(source, **hub_kwargs)
        model_type = config_dict.get("model_type")
        if model_type not in ("pointclip", "clip"):
            raise ValueError(f"{source} holds a {model_type!r} model; expected a PointCLIP or a CLIP checkpoint.")
        is_clip_checkpoint = model_type == "clip"
        if config is None:
            if is_clip_checkpoint:
                clip_config = CLIPConfig.from_dict(config_dict)
                config = PointCLIPConfig(clip_config=clip_config, clip_model_name_or_path=str(source), **overrides)
            else:
                config = PointCLIPConfig.from_pretrained(source, **hub_kwargs, **overrides)
        elif overrides:
            raise ValueError(f"Pass either config= or config fields {sorted(overrides)}, not both.")
        if clip_model_name_or_path is not None:
            config.clip_model_name_or_path = clip_model_name_or_path
        if is_clip_checkpoint:
            base = source
            config.clip_model_name_or_path = config.clip_model_name_or_path or source
        else:
            base = config.clip_model_name_or_path or source
        base_kwargs = kwargs if base == source else {k: v for k, v in kwargs.items() if k not in ("revision", "subfolder")}
        want_info = base_kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(base, *model_args, config=config, output_loading_info=True, **base_kwargs)
        missing_clip = [key for key in info["missing_keys"] if not key.startswith("adapter.")]
        if missing_clip:
            raise OSError(f"{base} does not hold the CLIP weights this model needs (missing {missing_clip[:5]}...).")
        if model.adapter is not None and not is_clip_checkpoint and base != source:
            load_adapter_into(model.adapter, load_adapter_state_dict(source, **hub_kwargs), str(source))
        elif model.adapter is not None and any(key.startswith("adapter.") for key in info["missing_keys"]):
            if not is_clip_checkpoint:
                raise OSError(f"{source} asks for an adapter but holds no adapter weights.")
        model.config._name_or_path = model.name_or_path = str(source)
        return (model, info) if want_info else model


def scores_to_predictions(logits: torch.Tensor, labels: list[str], top_k: int | None) -> list[list[dict]]:
    """`[batch, K]` logits -> per cloud, `{"label", "score"}` dicts sorted by softmax score."""
    scores = logits.float().softmax(dim=-1)
    k = min(top_k or len(labels), len(labels))
    values, indices = scores.topk(k, dim=-1)
    return [
        [{"label": labels[i], "score": s} for s, i in zip(row_values, row_indices)]
        for row_values, row_indices in zip(values.tolist(), indices.tolist())
    ]


__all__ = ["PointCLIPModel", "PointCLIPPreTrainedModel", "PointCLIPOutput"]
