"""PointCLIP: CLIP's image tower on multi-view depth maps, the views combined into one point-cloud embedding and
compared with CLIP text embeddings of prompts. Pixel values (or view features) and text in, logits and loss out."""

import contextlib
import copy
import math
import os
import zlib
from array import array
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from huggingface_hub import is_offline_mode
from huggingface_hub.errors import OfflineModeIsEnabled, StrictDataclassError
from safetensors import SafetensorError
from transformers import CLIPConfig, CLIPModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import CONFIG_NAME, ModelOutput, cached_file, can_return_tuple
from transformers.utils.hub import extract_commit_hash

from .choices import dtype_name
from .configuration_pointclip import PointCLIPConfig, config_class_for, with_own_config_class
from .cpu_threads import map_on_cpu_threads, run_on_cpu_thread
from .inter_view_adapter import (
    ADAPTER_PREFIX,
    CACHE_PREFIX,
    CacheModel,
    InterViewAdapter,
    adapter_state_dict,
    fused_features,
    load_adapter_into,
    load_cache_into,
    load_saved_tensors,
)
from .processing_pointclip import pop_point_options
from .prompts import check_local_path_exists


@dataclass
class PointCLIPOutput(ModelOutput):
    r"""
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            Label-smoothed cross-entropy.
        logits (`torch.FloatTensor` of shape `(batch, labels)`):
            Class scores, `logit_scale / sqrt(views) * sum_v <embed_v, text_k>`, plus the cache head's
            `alpha * exp(-beta * (1 - f @ keys.T)) @ values` when the model has one.
        view_features (`torch.FloatTensor` of shape `(batch, views, C)`):
            CLIP image embeddings of the views, before any normalisation.
        point_cloud_embeds (`torch.FloatTensor` of shape `(batch, views, C)`):
            The point-cloud embedding, one normalised, view-weighted block per view (flatten it for the reference's
            `(batch, views * C)` vector).
        text_embeds (`torch.FloatTensor` of shape `(labels, C)`):
            Normalised label embeddings.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    view_features: torch.FloatTensor | None = None
    point_cloud_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


def smooth_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    r"""
    DGCNN-style label smoothing as PointCLIP trains: target `1 - smoothing` on the class, `smoothing / (K - 1)`
    elsewhere.

    Args:
        logits (`torch.Tensor` of shape `(batch, K)`):
            Class scores.
        labels (`torch.Tensor` of shape `(batch,)`):
            Class indices in `[0, K)`.
        smoothing (`float`):
            The smoothing.
    """
    num_classes = logits.shape[-1]
    # torch spreads `label_smoothing` over all K classes, DGCNN spreads `smoothing` over the K - 1 others: K / (K - 1).
    torch_smoothing = smoothing * num_classes / (num_classes - 1) if num_classes > 1 else 0.0
    problem = next((message for failed, message in _loss_checks(labels, num_classes, smoothing) if failed), None)
    if problem:
        raise ValueError(problem)
    return F.cross_entropy(logits, labels, label_smoothing=torch_smoothing)


def _loss_checks(labels: torch.Tensor, num_classes: int, smoothing: float):
    """(failed, message) of each check of `smooth_cross_entropy`'s inputs, in order: each is evaluated only when those
    before it passed."""
    yield (
        labels.min() < 0 or labels.max() >= num_classes,
        f"Labels must lie in [0, {num_classes}), got values from {labels.min()} to {labels.max()}.",
    )
    yield (
        num_classes > 1 and smoothing * num_classes / (num_classes - 1) > 1,
        f"label_smoothing {smoothing} with {num_classes} classes would give the true class less weight than each "
        f"other class; use at most {(num_classes - 1) / max(num_classes, 1):g}.",
    )


SENTENCES_PER_TEXT_CALL = 16
TOKENS_PER_LENGTH_STEP = 8


def text_tower_calls(sentences: list[list[int]], context_length: int) -> list[tuple[int, list[int | None]]]:
    r"""
    Group tokenised sentences into text-tower calls of a fixed shape: `SENTENCES_PER_TEXT_CALL` rows, padded to the
    sentence length rounded up to `TOKENS_PER_LENGTH_STEP` tokens. A sentence's row is a checksum of its tokens, so its
    call shape, row and padding are functions of the sentence alone, and its embedding never depends on the others.

    Args:
        sentences (`list[list[int]]`):
            The token ids of each sentence, without padding.
        context_length (`int`):
            The text tower's longest input.

    Returns:
        `list[tuple[int, list[int | None]]]`: per call, its padded length and, per row, the index of its sentence or
        `None` for an empty row.
    """
    rows_by_length = {}
    for index, tokens in enumerate(sentences):
        length = min(context_length, -(-len(tokens) // TOKENS_PER_LENGTH_STEP) * TOKENS_PER_LENGTH_STEP)
        row = zlib.crc32(array("q", tokens).tobytes()) % SENTENCES_PER_TEXT_CALL
        rows_by_length.setdefault(length, [[] for _ in range(SENTENCES_PER_TEXT_CALL)])[row].append(index)
    return [
        (length, [queue[depth] if depth < len(queue) else None for queue in rows])
        for length, rows in sorted(rows_by_length.items())
        for depth in range(max(map(len, rows)))
    ]


def _label_embeds(sentence_embeds: torch.Tensor, prompt_class_ids: torch.Tensor | None) -> torch.Tensor:
    """Normalised means of the normalised sentence embeddings of each label (one sentence per label by default)."""
    if prompt_class_ids is not None:
        num_labels = int(prompt_class_ids.max()) + 1
        summed = sentence_embeds.new_zeros(num_labels, sentence_embeds.shape[-1])
        sentence_embeds = summed.index_add_(0, prompt_class_ids.to(sentence_embeds.device), sentence_embeds)
    return F.normalize(sentence_embeds, dim=-1)


class PointCLIPPreTrainedModel(PreTrainedModel):
    config: PointCLIPConfig
    base_model_prefix = "clip"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    _no_split_modules = ["CLIPEncoderLayer", "CLIPTextEmbeddings", "CLIPVisionEmbeddings"]
    _keys_to_ignore_on_load_missing = [r"^adapter\.", r"^cache\."]
    _keys_to_ignore_on_load_unexpected = [r"^label_text_embeds$"]
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _processor = None
    loading_kwargs = {}
    point_options = {}
    model_class_of_config = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        PointCLIPPreTrainedModel.model_class_of_config.setdefault(cls.config_class, cls)

    def __init__(self, config: PointCLIPConfig):
        super().__init__(config if isinstance(config, self.config_class) else with_own_config_class(config))
        self.clip = CLIPModel(config.clip_config)
        self.adapter = None
        self.label_text_embeds = None
        self.loading_kwargs = {}

    def post_init(self):
        """transformers' weight initialisation, then CLIP frozen: only the heads train."""
        super().post_init()
        self.clip.requires_grad_(False)

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, InterViewAdapter):  # children come first: give its layers PyTorch's default init
            init.constant_(module.view_fusion_weights, module.init)
            for linear in (module.global_proj, module.view_mlp_in, module.view_mlp_out):
                init.kaiming_uniform_(linear.weight, a=math.sqrt(5))
                bound = 1.0 / math.sqrt(linear.in_features)
                init.uniform_(linear.bias, -bound, bound)
        if isinstance(module, CacheModel):  # filled by build_cache or the saved cache
            init.zeros_(module.keys)
            init.zeros_(module.values)

    def encode_in_fixed_calls(self, pixel_values: torch.Tensor, encode) -> torch.Tensor:
        r"""
        Run `encode` on the images of whole clouds in calls whose shape and content never depend on the rest of the
        batch. On the CPU each call holds half a cloud's views and runs on a single-threaded worker
        ([`~cpu_threads.map_on_cpu_threads`]), so the bits do not depend on the thread count either. Elsewhere each call
        holds `max_images_per_batch // views` whole clouds (128 images by default), the last call padded with blank
        clouds whose outputs are dropped.

        Args:
            pixel_values (`torch.Tensor` of shape `(batch, views, 3, S, S)`):
                Depth images.
            encode (`Callable`):
                Images `(images_per_call, 3, S, S)` in the model's dtype -> one output per image.

        Returns:
            `torch.Tensor` of shape `(batch, views, ...)`.
        """
        shape = tuple(pixel_values.shape)
        problem = (
            f"pixel_values must be [batch, views, 3, S, S], got shape {shape}." if len(shape) != 5 or shape[2] != 3
            else f"pixel_values hold {shape[1]} views but this model ({self.config.projection_style}) expects "
            f"{self.config.num_views}: the processor and the model use different projections."
            if shape[1] != self.config.num_views else None
        )  # fmt: skip
        if problem:
            raise ValueError(problem)
        batch, views = shape[:2]
        images = pixel_values.to(self.device).flatten(0, 1)
        images_per_call = self.images_per_tower_call()
        padding = -len(images) % images_per_call
        if padding:
            images = torch.cat([images, images.new_zeros(padding, *images.shape[1:])])
        calls = images.split(images_per_call)
        outputs = torch.cat(map_on_cpu_threads(lambda call: encode(call.to(self.dtype)), calls, self.device))
        return outputs[: batch * views].reshape(batch, views, *outputs.shape[1:])

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        prompt_class_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        Normalised label embeddings from tokenised prompts: each sentence is encoded and normalised, the sentences of a
        label are averaged and normalised again. A sentence's embedding depends on its own tokens alone: it goes into a
        text-tower call of a fixed shape (see [`text_tower_calls`]) at a row chosen by its tokens.

        Args:
            input_ids (`torch.Tensor` of shape `(prompts, length)`):
                Token ids of the prompt sentences.
            attention_mask (`torch.Tensor` of shape `(prompts, length)`, *optional*):
                1 for tokens, 0 for right padding.
            prompt_class_ids (`torch.Tensor` of shape `(prompts,)`, *optional*):
                The label each sentence belongs to; by default one sentence per label.

        Returns:
            `torch.Tensor` of shape `(labels, C)`.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        sentences = [ids[:length] for ids, length in zip(input_ids.tolist(), attention_mask.sum(-1).tolist())]
        calls = text_tower_calls(sentences, self.config.clip_config.text_config.max_position_embeddings)
        outputs = map_on_cpu_threads(
            lambda call: self._encode_sentences(call[0], [None if i is None else sentences[i] for i in call[1]]),
            calls,
            self.device,
        )
        rows = torch.tensor([-1 if index is None else index for _, call in calls for index in call])
        filled = (rows >= 0).nonzero().squeeze(1)
        position_of_sentence = torch.empty_like(filled)
        position_of_sentence[rows[filled]] = filled
        sentence_embeds = torch.cat(outputs)[position_of_sentence.to(self.device)]
        return run_on_cpu_thread(_label_embeds, sentence_embeds, prompt_class_ids, device=self.device)

    def _encode_sentences(self, length: int, rows: list[list[int] | None]) -> torch.Tensor:
        """The normalised embeddings of one call's rows of `length` tokens; an empty row (`None`) holds a copy of
        another sentence, and its output is dropped by the caller."""
        filler = next(tokens for tokens in rows if tokens is not None)
        input_ids = torch.zeros(len(rows), length, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, tokens in enumerate(rows):
            tokens = filler if tokens is None else tokens
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            attention_mask[row, : len(tokens)] = 1
        pooled = self.clip.text_model(
            input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
        ).pooler_output
        return F.normalize(self.clip.text_projection(pooled), dim=-1)

    @property
    def processor(self):
        """The [`PointCLIPProcessor`] attached to this model, else the one that belongs to it: loaded once, from the
        same place and with the same Hub arguments as the model (see `PointCLIPProcessor.from_model_source`)."""
        if self._processor is None:
            from .processing_pointclip import PointCLIPProcessor, with_point_options

            source, config, loading_kwargs = self.name_or_path, self.config, self.loading_kwargs
            processor = PointCLIPProcessor.from_model_source(source, config, **loading_kwargs)
            self._processor = with_point_options(processor, **self.point_options)
        return self._processor

    @processor.setter
    def processor(self, processor) -> None:
        self._processor = processor

    def images_per_tower_call(self) -> int:
        """Images per image-tower call: half a cloud's views on the CPU (whole clouds when the number of views is odd),
        else `config.max_images_per_batch` (default 128) rounded down to whole clouds."""
        views = self.config.num_views
        if self.device.type == "cpu":
            return views // 2 if views % 2 == 0 else views
        return max(1, (self.config.max_images_per_batch or 128) // views) * views

    def processor_to_store(self):
        """The processor `save_pretrained` writes beside a whole model (`config.clip_model_name_or_path = None`): no
        base CLIP holds its tokenizer then, so without it the saved folder could not classify. `None` otherwise."""
        if self.config.clip_model_name_or_path is not None:
            return None
        return self.processor

    def custom_pipelines(self) -> dict:
        """The pipelines `save_pretrained` names in `config.json`, so that `pipeline(model=folder,
        trust_remote_code=True)` finds this model's task."""
        from .pipeline_pointclip import CUSTOM_PIPELINES

        return CUSTOM_PIPELINES

    def trained_state_dict(self, state_dict: dict) -> dict:
        """What `save_pretrained` writes of `state_dict`: the heads (fp32) and the label embeddings; the CLIP weights
        too only when `config.clip_model_name_or_path` is `None` (no base CLIP holds them then)."""
        if self.config.clip_model_name_or_path is not None:
            state_dict = adapter_state_dict(state_dict)
        if self.label_text_embeds is not None:
            state_dict = {**state_dict, "label_text_embeds": self.label_text_embeds.float().cpu()}
        return state_dict

    def save_pretrained(self, save_directory, state_dict: dict | None = None, push_to_hub: bool = False, **kwargs):
        r"""
        Save `config.json` and `model.safetensors` (sharded or with a `variant` as transformers does). The weights
        hold only the trained heads (fp32) and the label embeddings, whatever `state_dict` a caller such as `Trainer`
        passes: the frozen CLIP is referenced by `config.clip_model_name_or_path` at `config.clip_revision`. Only when
        that is `None` are the CLIP weights stored too, with the processor (and so the tokenizer). The config names the
        model's pipeline, so `pipeline(model=folder, trust_remote_code=True)` finds it. With `push_to_hub=True` the
        folder is then uploaded as [`~PointCLIPPreTrainedModel.push_to_hub`] does.

        Raises:
            `ValueError`: when CLIP weights were made trainable (they would be silently lost): freeze them, or set
            `config.clip_model_name_or_path = None` to store the whole model.
        """
        self._check_clip_is_frozen()
        if push_to_hub:
            return self.push_to_hub(kwargs.pop("repo_id", None) or str(save_directory).rstrip("/").split("/")[-1],
                                    save_directory=save_directory, **kwargs)  # fmt: skip
        processor = self.processor_to_store()
        state_dict = self.trained_state_dict(state_dict if state_dict is not None else self.state_dict())
        self.config.custom_pipelines = self.custom_pipelines()
        saved = super().save_pretrained(save_directory, state_dict=state_dict, **kwargs)
        if processor is not None:
            processor.save_pretrained(save_directory)
        return saved

    def _check_clip_is_frozen(self) -> None:
        trainable = [name for name, parameter in self.clip.named_parameters() if parameter.requires_grad]
        if trainable and self.config.clip_model_name_or_path is not None:
            raise ValueError(
                f"CLIP weights are trainable ({trainable[:3]}...), but save_pretrained stores only the trained heads "
                f"and loads CLIP from {self.config.clip_model_name_or_path}: changes to them would be lost. Freeze "
                "them (model.clip.requires_grad_(False)) or set model.config.clip_model_name_or_path = None to store "
                "the whole model."
            )

    def push_to_hub(self, repo_id: str, **kwargs):
        r"""
        Upload the trained weights, config, processor and our model card to `repo_id` in one commit, with the
        arguments of transformers' `push_to_hub` (`commit_message`, `commit_description`, `private`, `token`,
        `revision` (the branch is created), `create_pr`, `tags`, ...). Every argument is checked before anything is
        created on the Hub. See [`pointclip_hf.hub_upload.push_model_to_hub`] for all of them.
        """
        try:
            from pointclip_hf.hub_upload import push_model_to_hub
        except ImportError:
            raise ImportError("push_to_hub needs the pointclip_hf package: pip install pointclip_hf.") from None
        return push_model_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        r"""
        Load a PointCLIP folder or Hub repo (its config, the base CLIP named by `config.clip_model_name_or_path` at
        `config.clip_revision`, then its trained weights), or any plain CLIP checkpoint as a zero-shot model (choose
        the projection and prompts with config fields, e.g. `projection_style="pointclip_v2"`, or a whole
        `config=...`). The Hub arguments (`revision`, `token`, `cache_dir`, `local_files_only`, `subfolder`,
        `trust_remote_code`) are kept in `model.loading_kwargs`, so the processor comes from the same place;
        `sampling=` and `up_axis=` change that processor's point settings (see [`PointCLIPFeatureExtractor`]). Fails
        loudly when the CLIP or the trained weights are missing or do not fit. A `config` of another model (as
        `AutoModel` passes for a part-segmentation folder saved with the old `model_type`) loads into that model's
        class.
        """
        config = kwargs.get("config")
        if config is not None:
            kwargs["config"] = config = with_own_config_class(config)
            model_class = cls.model_class_of_config.get(type(config), cls)
            if model_class is not cls and issubclass(model_class.config_class, cls.config_class):
                return model_class.from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        return load_pointclip_model(super().from_pretrained, pretrained_model_name_or_path, *model_args, **kwargs)


class PointCLIPModel(PointCLIPPreTrainedModel):
    r"""
    Zero-shot and few-shot point-cloud classification with a frozen CLIP.

    `pixel_values` of shape `(batch, views, 3, S, S)` (from [`PointCLIPFeatureExtractor`]) go through CLIP's image
    tower, giving `view_features` of shape `(batch, views, C)`. Without adapter each view is L2-normalised; with the
    inter-view adapter the adapted features are normalised over all `views * C` values. Each block is scaled by its
    view weight.
    Logits are `logit_scale / sqrt(views) * sum_v <embed_v, text_k>`, exactly the reference's
    `logit_scale * [views * C] @ normalize(text.repeat(views)).T`.

    CLIP is frozen (`requires_grad=False`); only the adapter trains. Load a trained model with
    `PointCLIPModel.from_pretrained("user/repo")`, a zero-shot one from any CLIP checkpoint with
    `PointCLIPModel.from_pretrained("openai/clip-vit-base-patch16")`, and classify with `model.classify(...)` or the
    `"point-cloud-zero-shot-classification"` pipeline.

    Args:
        config ([`PointCLIPConfig`]):
            The configuration.
    """

    _auto_class = "AutoModel"  # save_pretrained writes it into the auto_map

    def __init__(self, config: PointCLIPConfig):
        super().__init__(config)
        if config.use_adapter:
            self.adapter = InterViewAdapter(
                config.num_views,
                config.embed_dim,
                ratio=config.adapter_ratio,
                init=config.adapter_init,
                dropout=config.adapter_dropout,
            )
        self.cache = None
        if config.use_cache_head:
            self.cache = CacheModel(config.cache_size, config.num_views * config.embed_dim, len(config.label_names))
        self.post_init()

    def get_view_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        r"""
        CLIP image embeddings of every view. Each call of the image tower holds a fixed number of whole clouds (one on
        CPU, `max_images_per_batch // views` on accelerators, the last call padded with blank clouds whose outputs are
        dropped), so a cloud's features never depend on the other clouds of the batch.

        Args:
            pixel_values (`torch.Tensor` of shape `(batch, views, 3, S, S)`):
                Depth images from [`PointCLIPFeatureExtractor`].

        Returns:
            `torch.Tensor` of shape `(batch, views, C)`: the projected, unnormalised view embeddings.
        """
        return self.encode_in_fixed_calls(pixel_values, self._encode_images)

    def _encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.visual_projection(self.clip.vision_model(pixel_values=images).pooler_output)

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
        return run_on_cpu_thread(self._embed_views, view_features, apply_view_weights, device=view_features.device)

    def _embed_views(self, view_features: torch.Tensor, apply_view_weights: bool) -> torch.Tensor:
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

    def set_label_text_embeds(self, text_embeds: torch.Tensor) -> None:
        r"""
        Store the label embeddings of `config.label_names` (from [`~pipeline_pointclip.label_embeddings`]), so that
        `forward` needs no text inputs (as `Trainer` calls it). They are saved with the adapter.

        Args:
            text_embeds (`torch.Tensor` of shape `(len(config.label_names), C)`):
                Normalised label embeddings in `config.label_names` order.
        """
        expected = (len(self.config.label_names or []), self.config.embed_dim)
        if tuple(text_embeds.shape) != expected or not torch.isfinite(text_embeds).all():
            raise ValueError(
                f"Label embeddings must be finite, of shape {expected} (config.label_names x embedding width), got "
                f"shape {tuple(text_embeds.shape)}."
            )
        self.label_text_embeds = text_embeds.detach().float().clone()

    def _resolve_text_embeds(self, input_ids, attention_mask, prompt_class_ids, text_embeds) -> torch.Tensor:
        if text_embeds is not None:
            return F.normalize(text_embeds, dim=-1)
        if input_ids is not None:
            return self.get_text_features(input_ids, attention_mask, prompt_class_ids)
        return self.label_text_embeds.to(self.device)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prompt_class_ids: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        view_features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> PointCLIPOutput:
        r"""
        Args:
            pixel_values (`torch.Tensor` of shape `(batch, views, 3, S, S)`, *optional*):
                Depth images; or give `view_features`.
            input_ids (`torch.Tensor` of shape `(prompts, length)`, *optional*):
                Tokenised prompts; or give `text_embeds`; with neither, the stored embeddings of
                `config.label_names` are used.
            attention_mask (`torch.Tensor` of shape `(prompts, length)`, *optional*):
                Padding mask of `input_ids`.
            prompt_class_ids (`torch.Tensor` of shape `(prompts,)`, *optional*):
                The label each prompt belongs to (default: one prompt per label).
            text_embeds (`torch.Tensor` of shape `(labels, C)`, *optional*):
                Label embeddings; with a cache head, those of `config.label_names` in that order (the cache's columns).
            view_features (`torch.Tensor` of shape `(batch, views, C)`, *optional*):
                CLIP view embeddings (e.g. cached, for fast adapter training).
            labels (`torch.LongTensor` of shape `(batch,)`, *optional*):
                Class indices, for the loss.
        """
        no_text = input_ids is None and text_embeds is None and self.label_text_embeds is None
        problem = (
            "Give pixel_values or view_features." if pixel_values is None and view_features is None
            else "Give input_ids (tokenised prompts) or text_embeds, or store the embeddings of config.label_names "
            "with model.set_label_text_embeds(...) (build_few_shot_model does)." if no_text else None
        )  # fmt: skip
        if problem:
            raise ValueError(problem)
        if view_features is None:
            view_features = self.get_view_features(pixel_values)
        text_embeds = self._resolve_text_embeds(input_ids, attention_mask, prompt_class_ids, text_embeds)
        embeds = self.get_point_cloud_embeds(view_features)
        if text_embeds.shape[-1] != embeds.shape[-1]:
            raise ValueError(f"text_embeds have width {text_embeds.shape[-1]}, the image features {embeds.shape[-1]}.")
        text_embeds = text_embeds.to(embeds.dtype)
        logits = run_on_cpu_thread(self._scores, embeds, text_embeds, device=embeds.device)
        loss = None
        if labels is not None:
            loss = smooth_cross_entropy(logits.float(), labels.to(logits.device), self.config.label_smoothing)
        return PointCLIPOutput(
            loss=loss, logits=logits, view_features=view_features, point_cloud_embeds=embeds, text_embeds=text_embeds
        )

    def _scores(self, embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        scale = self.clip.logit_scale.exp().to(embeds.dtype) / math.sqrt(embeds.shape[1])
        logits = scale * torch.cat([torch.einsum("bvc,kc->bk", cloud, text_embeds) for cloud in embeds.split(1)])
        return self._add_cache_logits(logits, embeds)

    def _add_cache_logits(self, logits: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        """`logits` plus the cache head's `alpha * exp(-beta * (1 - f @ keys.T)) @ values`, whose columns follow
        `config.label_names`: the text rows must be in that order."""
        if self.cache is None:
            return logits
        if logits.shape[-1] != self.cache.values.shape[1]:
            raise ValueError(
                f"This model's cache scores its {self.cache.values.shape[1]} config.label_names, got "
                f"{logits.shape[-1]} labels: give the text of config.label_names, in that order."
            )
        cache_logits = self.cache(fused_features(embeds), float(self.config.cache_beta))
        return logits + (float(self.config.cache_alpha) * cache_logits).to(logits.dtype)

    def set_cache(self, keys: torch.Tensor, label_ids: torch.Tensor) -> None:
        r"""
        Give the model a cache head (Tip-Adapter) holding `keys` and the one-hot `label_ids`, replacing any earlier
        cache; `config.use_cache_head` and `config.cache_size` follow. [`~PointCLIPModel.build_cache`] calls it.

        Args:
            keys (`torch.Tensor` of shape `(entries, views * C)`):
                L2-normalised fused features of the support clouds (see `inter_view_adapter.fused_features`).
            label_ids (`torch.Tensor` of shape `(entries,)`):
                Their classes, as indices into `config.label_names`.
        """
        num_labels = len(self.config.label_names or [])
        width = self.config.num_views * self.config.embed_dim
        problem = (
            f"Cache keys must have shape (entries >= 1, {width}) with one label id each, got {tuple(keys.shape)} and "
            f"{len(label_ids)} label ids." if keys.ndim != 2 or keys.shape[1] != width or len(label_ids) != len(keys)
            or not len(keys)
            else f"Cache label ids must index config.label_names ({num_labels} labels)."
            if not num_labels or label_ids.min() < 0 or label_ids.max() >= num_labels else None
        )  # fmt: skip
        if problem:
            raise ValueError(problem)
        cache = CacheModel(len(keys), width, num_labels).to(self.device)
        cache.set_entries(keys.to(self.device), label_ids.to(self.device))
        self.cache = cache
        self.config.use_cache_head, self.config.cache_size = True, len(keys)

    def trainable_heads(self) -> torch.nn.ModuleDict:
        """The heads few-shot training updates, those the model has: the inter-view adapter and the cache (its keys,
        Tip-Adapter-F). Their state-dict keys are the model's own (`adapter.*`, `cache.*`)."""
        heads = {"adapter": self.adapter, "cache": self.cache}
        return torch.nn.ModuleDict({name: head for name, head in heads.items() if head is not None})

    def build_cache(self, support, labels=None, **kwargs):
        r"""
        Build the cache head (Tip-Adapter) from few-shot support clouds and search its `alpha` and `beta` on a
        validation split: see [`pointclip_hf.cache_building.build_cache`] for every argument.

        Args:
            support (`datasets.Dataset`, a folder or a list of files):
                Labelled support clouds (columns `points` and `label`), or point-cloud files with `labels`.
            labels (`list[str]`, *optional*):
                One class name per file, when `support` is files.
            kwargs:
                `shots`, `seed`, `validation`, `validation_fraction`, `search`, `alpha`, `beta`, ...

        Returns:
            `dict`: how the cache was built (also stored as `config.cache_info`).
        """
        try:
            from pointclip_hf.cache_building import build_cache
        except ImportError:
            raise ImportError("build_cache needs the pointclip_hf package: pip install pointclip_hf.") from None
        return build_cache(self, support, labels, **kwargs)

    def compile_image_tower(self, **compile_kwargs) -> "PointCLIPModel":
        """Opt in to `torch.compile` for CLIP's image tower, the part that dominates the cost; `compile_kwargs` go to
        `torch.compile` (e.g. `mode="max-autotune"`). Returns the model."""
        self.clip.vision_model.compile(**compile_kwargs)
        return self

    def set_view_weights(self, weights) -> None:
        """Set the per-view weights (e.g. from `pointclip_hf.search_view_weights`); they are saved with the config.
        Weights that are not finite numbers in `[0, 100]` raise a `ValueError` and leave the model unchanged."""
        try:
            candidate = [float(w) for w in weights]
        except (TypeError, ValueError):
            raise ValueError(f"view_weights must be a list of numbers, got {weights!r}.") from None
        checked = copy.copy(self.config)
        checked.view_weights = candidate
        checked.validate_fields()
        self.config.view_weights = candidate

    def classify(self, point_clouds, labels=None, top_k: int | None = None, batch_size: int = 1, processor=None,
                 **pipeline_kwargs):  # fmt: skip
        r"""
        Classify one point cloud or several: a short call for the `"point-cloud-zero-shot-classification"` pipeline,
        with the same rules and results. A cloud's scores are bitwise identical whatever else is in its batch (any
        `batch_size` or position; on CPU, and on CUDA with deterministic algorithms, see the README).

        Args:
            point_clouds (`np.ndarray`, `torch.Tensor`, `str` or a list of them):
                One cloud of shape `(N, 3+)` or a file path, or several (a list or a `(B, N, 3)` array).
            labels (`list[str]` or `str`, *optional*):
                Candidate labels; a model with a trained adapter defaults to, and only accepts, its
                `config.label_names` (in any order).
            top_k (`int`, *optional*):
                Keep the `top_k` best labels (all by default).
            batch_size (`int`, *optional*, defaults to 1):
                Clouds rendered and encoded at once.
            processor ([`PointCLIPProcessor`], *optional*):
                Defaults to `model.processor` when one is attached, else the one saved with the model, loaded from the
                same place with the same Hub arguments.
            pipeline_kwargs:
                More pipeline arguments, such as `hypothesis_template`.

        Returns:
            For one cloud a list of `{"label", "score"}` sorted by score; for several, one such list per cloud.
        """
        from .pipeline_pointclip import PointCloudZeroShotClassificationPipeline

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        pipeline = PointCloudZeroShotClassificationPipeline(model=self, processor=processor, device=self.device)
        return pipeline(point_clouds, candidate_labels=labels, top_k=top_k, batch_size=batch_size, **pipeline_kwargs)


HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder", "token")
LOADING_KWARGS = (*HUB_KWARGS, "trust_remote_code")
POINTCLIP_CONFIG_FIELDS = set(PointCLIPConfig.__dataclass_fields__) - set(PreTrainedConfig.__dataclass_fields__)


def load_pointclip_model(base_from_pretrained, source, *model_args, config=None, clip_model_name_or_path=None,
                         variant=None, **kwargs):  # fmt: skip
    r"""
    Load a PointCLIP model from a PointCLIP folder or repo, or from a plain CLIP checkpoint.

    Args:
        base_from_pretrained (`Callable`):
            `PreTrainedModel.from_pretrained` bound to the model class: loads the CLIP weights into place.
        source (`str` or `os.PathLike`):
            The folder or Hub repo id.
        config ([`PointCLIPConfig`], *optional*):
            A configuration to use instead of the saved one (or, for a CLIP checkpoint, the default one).
        clip_model_name_or_path (`str`, *optional*):
            Another base CLIP than the one the config names.
        variant (`str`, *optional*):
            The weights variant of the adapter file (`model.{variant}.safetensors`).
        kwargs:
            Config fields (for a CLIP checkpoint), point settings of the processor (`sampling`, `up_axis`: kept in
            `model.point_options` and applied to the processor that `processor_for_model` finds), Hub arguments and
            any other `from_pretrained` argument.
    """
    source = str(source)
    check_local_path_exists(source, "model folder")
    point_options = pop_point_options(kwargs)
    hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
    overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in POINTCLIP_CONFIG_FIELDS}
    try:
        config_class = base_from_pretrained.__self__.config_class
        config, is_clip_checkpoint = _resolve_config(source, config, overrides, hub_kwargs, config_class)
    except (StrictDataclassError, OSError) as error:  # a field of config.json (or an override) out of range: one line
        invalid = ValueError(f"The config.json of {source} is invalid: {' '.join(str(error).split())}")
        one_line = invalid if isinstance(error, StrictDataclassError) else offline_error(source, source, hub_kwargs)
        if one_line is None:
            raise  # keeps its chain: a network failure stays one
        raise one_line from None
    if clip_model_name_or_path is not None:
        config.clip_model_name_or_path, config.clip_revision = clip_model_name_or_path, None
    base, base_kwargs = _base_checkpoint(source, config, is_clip_checkpoint, kwargs)
    want_info = base_kwargs.pop("output_loading_info", False)
    described = base if base == source else f"The base CLIP {base} (config.clip_model_name_or_path of {source})"
    model, info = _load_base_weights(base_from_pretrained, base, described, model_args, config, base_kwargs)
    model.clip.requires_grad_(False)
    missing_clip = [key for key in info["missing_keys"] if not key.startswith("adapter.")]
    if missing_clip:
        raise OSError(f"{base} does not hold the CLIP weights this model needs (missing {missing_clip[:5]}...).")
    _check_clip_weights_finite(model, base)
    if not is_clip_checkpoint:
        _load_trained_tensors(model, source, base, variant, hub_kwargs, info)
    model.config._name_or_path = model.name_or_path = source
    model.loaded_weights_state = weights_state(model.clip)  # tells weights changed after loading apart (ONNX cache)
    model.point_options = point_options
    check_scores_discriminate(model)
    model.loading_kwargs = {key: kwargs[key] for key in LOADING_KWARGS if kwargs.get(key) is not None}
    if type(model).__module__.startswith("transformers_modules"):
        model.loading_kwargs["trust_remote_code"] = True
    return (model, info) if want_info else model


def _resolve_config(source: str, config, overrides: dict, hub_kwargs: dict, config_class: type[PointCLIPConfig]
                    ) -> tuple[PointCLIPConfig, bool]:  # fmt: skip
    """The model's config (a `config_class`) and whether `source` is a plain CLIP checkpoint (then the config is built
    around it); a saved model of another kind is one `ValueError` naming both."""
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(source, **hub_kwargs)
    except RecursionError:
        raise ValueError(f"The config.json of {source} is nested too deeply to be a model config.") from None
    checks = _saved_config_checks(source, config_dict, config, overrides, config_class)
    problem = next((message for failed, message in checks if failed), None)
    if problem:
        raise ValueError(problem)
    is_clip_checkpoint = config_dict["model_type"] == "clip"
    if config is None and is_clip_checkpoint:
        config = config_class(
            clip_config=CLIPConfig.from_dict(config_dict),
            clip_model_name_or_path=source,
            clip_revision=_commit_of(source, hub_kwargs),
            **overrides,
        )
    elif config is None:
        fields = {key: value for key, value in config_dict.items() if key != "model_type"}
        config = config_class.from_dict(fields, **overrides)
    elif is_clip_checkpoint and config.clip_model_name_or_path in (None, source):
        config.clip_model_name_or_path, config.clip_revision = source, _commit_of(source, hub_kwargs)
    return config, is_clip_checkpoint


def _saved_config_checks(source: str, config_dict, config, overrides: dict, config_class: type[PointCLIPConfig]):
    """(failed, message) of each check of a saved config against the load's arguments, in order: each is evaluated
    only when those before it passed."""
    yield not isinstance(config_dict, dict), f"The config.json of {source} is not a JSON object."
    model_type = config_dict.get("model_type")
    yield (
        model_type not in ("pointclip", "pointclip_part_segmentation", "clip"),
        f"{source} holds a {model_type!r} model; expected a PointCLIP or a CLIP checkpoint.",
    )
    yield config is not None and bool(overrides), f"Pass either config= or config fields {sorted(overrides)}, not both."
    saved_class = config_class if model_type == "clip" else config_class_for(config_dict)
    yield (
        config is None and saved_class is not config_class,
        f"{source} holds a {saved_class.model_type!r} model, not a {config_class.model_type!r} one: load it with "
        "AutoModel.from_pretrained or the model class of its config.",
    )


def _commit_of(source: str, hub_kwargs: dict) -> str | None:
    """The Hub commit `source` was resolved to (`None` for a local folder)."""
    return extract_commit_hash(cached_file(source, CONFIG_NAME, **hub_kwargs), None)


def _load_base_weights(base_from_pretrained, base: str, described: str, model_args, config, base_kwargs: dict):
    """The model with the CLIP weights of `base` (safetensors only: a pickled `pytorch_model.bin` is never read), and
    transformers' loading info; damaged weights or weights that do not fit the config are one `ValueError`, missing
    ones one `OSError` naming `base` (as `described`) and its commit."""
    try:
        return base_from_pretrained(
            base, *model_args, config=config, output_loading_info=True, use_safetensors=True, **base_kwargs
        )
    except (OSError, SafetensorError, RuntimeError) as error:
        one_line = _base_weights_error(error, base, described, base_kwargs)
        if one_line is None:
            raise  # keeps its chain: a network failure stays one
        raise one_line from None


def _base_weights_error(error: Exception, base: str, described: str, base_kwargs: dict) -> Exception | None:
    """The one-line error for what loading the CLIP weights of `base` raised, or `None` to let `error` through."""
    if isinstance(error, SafetensorError):
        return ValueError(f"The CLIP weights in {base} are not a valid safetensors file ({error}).")
    if isinstance(error, RuntimeError):
        sizes = "mismatched_sizes" in str(error) or "size mismatch" in str(error)
        return ValueError(f"The CLIP weights in {base} do not fit the sizes its config declares.") if sizes else None
    if "does not appear to have a file named" in str(error):
        return offline_error(base, described, base_kwargs) or OSError(
            f"{described}{_at_commit(base_kwargs.get('revision'))} holds no model.safetensors (nor a sharded index): "
            "pointclip_hf reads CLIP weights only from safetensors, never a pickled pytorch_model.bin."
        )
    return offline_error(base, described, base_kwargs)


def _base_checkpoint(source: str, config: PointCLIPConfig, is_clip_checkpoint: bool, kwargs: dict) -> tuple[str, dict]:
    """Where the CLIP weights come from, and the arguments to load them with: the base CLIP at its recorded commit."""
    if is_clip_checkpoint or config.clip_model_name_or_path is None:
        return source, dict(kwargs)
    check_local_path_exists(
        config.clip_model_name_or_path, f"base CLIP folder (config.clip_model_name_or_path of {source})"
    )
    base_kwargs = {key: value for key, value in kwargs.items() if key not in ("revision", "subfolder")}
    if config.clip_revision is not None:
        base_kwargs["revision"] = config.clip_revision
    return config.clip_model_name_or_path, base_kwargs


def _load_trained_tensors(model, source: str, base: str, variant, hub_kwargs: dict, info: dict) -> None:
    """Load the adapter, the cache and the label embeddings saved in `source` (when its CLIP came from elsewhere)."""
    needs_adapter = model.adapter is not None
    cache = getattr(model, "cache", None)
    if base == source and not needs_adapter and cache is None:
        return
    required = (needs_adapter or cache is not None) and base != source
    tensors = load_saved_tensors(source, variant=variant, required=required, **hub_kwargs)
    if "label_text_embeds" in tensors:
        model.set_label_text_embeds(tensors.pop("label_text_embeds"))
    heads = (  # prefix, head, loader, what a save without it lacks; a cache is never in the base CLIP
        (CACHE_PREFIX, cache, load_cache_into, "a cache (config.use_cache_head) but holds no cache tensors", True),
        (ADAPTER_PREFIX, model.adapter, load_adapter_into, "an adapter but holds no adapter weights", base != source),
    )
    for prefix, head, load_into, lacking, must_hold in heads:
        saved = {key.removeprefix(prefix): value for key, value in tensors.items() if key.startswith(prefix)}
        if head is not None and saved:
            load_into(head, saved, source)
        elif head is not None and (must_hold or any(key.startswith(prefix) for key in info["missing_keys"])):
            raise OSError(f"{source} asks for {lacking}.")


def _check_clip_weights_finite(model, base: str) -> None:
    """Raise a `ValueError` naming the first CLIP weights of `base` that hold NaN or infinite values."""
    broken = [name for name, tensor in model.clip.state_dict().items()
              if tensor.is_floating_point() and not torch.isfinite(tensor).all()]  # fmt: skip
    if broken:
        raise ValueError(f"The CLIP weights in {base} hold NaN or infinite values (in {broken[:3]}).")


def offline_error(name: str, described: str, hub_kwargs: dict) -> OfflineModeIsEnabled | None:
    r"""
    The one line saying that `name` (at its revision) is not in the local Hugging Face cache while offline mode is
    on, when that is why loading it raised an `OSError` (transformers then speaks of a failed connection or of
    `use_safetensors`); else `None`.

    Args:
        name (`str`):
            The Hub repo id (a local folder is never the reason).
        described (`str`):
            How the message names it (e.g. as the base CLIP of a PointCLIP folder).
        hub_kwargs (`dict`):
            The Hub arguments it was loaded with: its `revision`, and `local_files_only` (which counts as offline).
    """
    offline = is_offline_mode() or hub_kwargs.get("local_files_only")
    if not offline or os.path.isdir(name):
        return None
    switch = "HF_HUB_OFFLINE is set" if is_offline_mode() else "local_files_only=True"
    return OfflineModeIsEnabled(
        f"{described}{_at_commit(hub_kwargs.get('revision'))} is not in the local Hugging Face cache, and offline mode "
        f"is on ({switch}): load it once online, or point to a local folder."
    )


def _at_commit(revision: str | None) -> str:
    return f" at commit {revision}" if revision else ""


# CLIP learns logit_scale upwards from ln(1 / 0.07) = 2.66 (OpenAI's checkpoints hold ln(100)); below 0,
# exp(logit_scale) shrinks the logits instead of sharpening them, and far below (say -100) every score is exactly 1 / K.
MIN_LOGIT_SCALE = 0.0
PROBE_LABELS = 8


def check_scores_discriminate(model) -> None:
    r"""
    Raise a `ValueError` naming the cause when `model`, in its current dtype, cannot tell labels apart: an
    `exp(logit_scale)` that overflows or lies below 1, adapter outputs that overflow, or (for [`PointCLIPModel`]) a
    classification head whose logits on fixed pseudo-random view features are NaN or all equal.

    Args:
        model ([`PointCLIPModel`] or [`PointCLIPForZeroShotPartSegmentation`]):
            The model.
    """
    problem = logit_scale_problem(model)
    if problem is None and hasattr(model, "get_point_cloud_embeds"):
        problem = head_problem(model)
    if problem is not None:
        raise ValueError(f"{model.name_or_path} cannot tell labels apart: {problem}.")


def logit_scale_problem(model) -> str | None:
    """Why `exp(logit_scale)`, computed as the model computes it, is unusable (`None` when it is usable)."""
    logit_scale = model.clip.logit_scale.detach()
    scale = logit_scale.exp().to(model.dtype)
    where = f"in the CLIP weights of {model.config.clip_model_name_or_path or model.name_or_path}"
    if not torch.isfinite(scale):
        return f"logit_scale = {float(logit_scale):g} {where}: exp(logit_scale) overflows {dtype_name(model.dtype)}"
    if float(logit_scale) < MIN_LOGIT_SCALE:
        return (
            f"logit_scale = {float(logit_scale):g} {where}: exp(logit_scale) = {float(scale):.3g} shrinks every logit "
            f"(it must be at least {MIN_LOGIT_SCALE:g})"
        )
    return None


def head_problem(model) -> str | None:
    """Why the classification head (adapter, normalisation, view weights, scale) of a [`PointCLIPModel`] gives NaN or
    equal logits for `PROBE_LABELS` random labels (a cache head's own label count) on fixed pseudo-random view
    features (`None` when it does not)."""
    generator = torch.Generator().manual_seed(0)
    shape = (1, model.config.num_views, model.config.embed_dim)
    num_labels = model.cache.values.shape[1] if model.cache is not None else PROBE_LABELS
    view_features = torch.randn(shape, generator=generator).to(model.device, model.dtype)
    text_embeds = torch.randn(num_labels, shape[-1], generator=generator).to(model.device, model.dtype)
    with _adapter_in_eval_mode(model), torch.no_grad():
        problem = _adapter_problem(model, view_features)
        logits = model.forward(view_features=view_features, text_embeds=text_embeds).logits  # no forward hooks
    if problem is None and (not torch.isfinite(logits).all() or (logits == logits[:, :1]).all()):
        outcome = "NaN or infinite" if not torch.isfinite(logits).all() else "all equal"
        problem = (
            f"its logits are {outcome} in {dtype_name(model.dtype)} (exp(logit_scale) = "
            f"{float(model.clip.logit_scale.exp()):.3g}, view_weights {model.config.view_weights})"
        )
    return problem


@contextlib.contextmanager
def _adapter_in_eval_mode(model):
    """The adapter in eval mode (its BatchNorm statistics untouched), its mode restored after."""
    training = model.adapter is not None and model.adapter.training
    if model.adapter is not None:
        model.adapter.eval()
    try:
        yield
    finally:
        if model.adapter is not None:
            model.adapter.train(training)


def _adapter_problem(model, view_features: torch.Tensor) -> str | None:
    if model.adapter is None:
        return None
    adapted = model.adapter(view_features.to(model.adapter.view_fusion_weights.dtype)).flatten(1)
    norm = adapted.norm(dim=-1)
    if torch.isfinite(adapted).all() and torch.isfinite(norm).all() and (norm > 0).all():
        return None
    magnitudes = {name: float(t.abs().max()) for name, t in model.adapter.state_dict().items() if t.is_floating_point()}
    name = max(magnitudes, key=magnitudes.get)
    return (
        f"the adapter's outputs overflow: adapter.{name} (in the weights of {model.name_or_path}) holds values up to "
        f"{magnitudes[name]:.3g}"
    )


def check_finite_logits(logits: torch.Tensor, model, names) -> None:
    r"""
    Raise a `ValueError` naming the first cloud whose logits are NaN or infinite, with the model's likely cause when
    [`check_scores_discriminate`] finds one.

    Args:
        logits (`torch.Tensor` of shape `(batch, labels)`):
            The model's logits.
        model ([`PointCLIPModel`]):
            The model that computed them.
        names (`Sequence[str]`):
            How the message names each cloud.
    """
    finite = torch.isfinite(logits).all(dim=-1)
    if bool(finite.all()):
        return
    check_scores_discriminate(model)
    first = int((~finite).nonzero()[0])
    raise ValueError(
        f"The scores of {names[first]} are NaN or infinite: its features overflow {dtype_name(model.dtype)} in "
        f"{model.name_or_path}."
    )


def weights_state(module: torch.nn.Module) -> tuple:
    r"""
    Where each parameter and buffer of `module` lives and its version: it changes when a weight is replaced, moved,
    cast or changed in place, without reading any weight (microseconds, not a content hash).

    Args:
        module (`torch.nn.Module`):
            The module.

    Returns:
        `tuple`: per tensor, its name, data pointer, version counter, dtype and device.
    """
    tensors = (*module.named_parameters(), *module.named_buffers())
    return tuple((name, t.data_ptr(), t._version, t.dtype, t.device) for name, t in tensors)
