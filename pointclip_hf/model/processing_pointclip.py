"""The processor: a [`PointCLIPFeatureExtractor`] (clouds -> depth images) and a CLIP tokenizer (labels -> prompt
tokens)."""

import copy
import json

import torch
from transformers import AutoTokenizer, BatchFeature, ProcessorMixin
from transformers.utils import FEATURE_EXTRACTOR_NAME, PROCESSOR_NAME, cached_file

from .feature_extraction_pointclip import PointCLIPFeatureExtractor
from .prompts import DEFAULT_TEMPLATES, build_prompts, check_labels, check_labels_encode_distinctly

CLIP_CONTEXT_LENGTH = 77
PROCESSOR_CONFIG_FILES = f"{PROCESSOR_NAME}, {FEATURE_EXTRACTOR_NAME} or tokenizer_config.json"
POINT_OPTIONS = ("sampling", "up_axis")


class PointCLIPProcessor(ProcessorMixin):
    r"""
    Constructs a PointCLIP processor: a [`PointCLIPFeatureExtractor`] that renders clouds to depth images and a CLIP
    tokenizer for the prompts that turn labels into sentences.

    Args:
        feature_extractor ([`PointCLIPFeatureExtractor`]):
            Clouds -> `pixel_values`.
        tokenizer ([`CLIPTokenizer`] or [`CLIPTokenizerFast`]):
            Prompt sentences -> `input_ids`.
        prompt_templates (`list[str]`, *optional*):
            Templates with one `{}` for the label; defaults to the projection style's template.
        class_prompts (`dict[str, list[str]]`, *optional*):
            Per-class sentences that replace the templates for the classes they name.
    """

    _auto_class = "AutoProcessor"  # save_pretrained writes it into the auto_map

    def __init__(self, feature_extractor=None, tokenizer=None, prompt_templates=None, class_prompts=None):
        self.prompt_templates = list(prompt_templates or DEFAULT_TEMPLATES[feature_extractor.projection_style])
        self.class_prompts = class_prompts
        super().__init__(feature_extractor, tokenizer)

    def tokenize(self, sentences, max_length: int = CLIP_CONTEXT_LENGTH, device=None) -> dict:
        """
        Tokenise sentences, cut to CLIP's context length and padded to the longest.

        Args:
            sentences (`list[str]`):
                The sentences.
            max_length (`int`, *optional*, defaults to 77):
                The text tower's context length.
            device (`torch.device`, *optional*):
                Where the tensors go.

        Returns:
            `dict` with `input_ids` and `attention_mask`, `torch.Tensor`s of shape `(sentences, length)`.
        """
        tokens = self.tokenizer(
            list(sentences), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        return {"input_ids": tokens["input_ids"].to(device), "attention_mask": tokens["attention_mask"].to(device)}

    def tokenize_labels(self, labels, prompt_templates=None, class_prompts=None, max_length=CLIP_CONTEXT_LENGTH,
                        device=None) -> dict:  # fmt: skip
        """
        Turn labels into prompt sentences and tokenise them.

        Args:
            labels (`list[str]`):
                Candidate labels.
            prompt_templates (`list[str]`, *optional*):
                Overrides the processor's templates.
            class_prompts (`dict[str, list[str]]`, *optional*):
                Overrides the processor's per-class sentences.
            max_length (`int`, *optional*, defaults to 77):
                The text tower's context length.
            device (`torch.device`, *optional*):
                Where the tensors go.

        Returns:
            `dict` with `input_ids`, `attention_mask` of shape `(prompts, length)` and `prompt_class_ids` of shape
            `(prompts,)`, the label each sentence belongs to.
        """
        labels = check_labels(labels)
        templates = prompt_templates or self.prompt_templates
        sentences, owners = build_prompts(labels, templates, class_prompts or self.class_prompts)
        tokens = self.tokenize(sentences, max_length=max_length, device=device)
        tokens["prompt_class_ids"] = torch.tensor(owners, device=device)
        special_ids = [*self.tokenizer.all_special_ids, self.tokenizer.unk_token_id]
        check_labels_encode_distinctly(labels, tokens, [i for i in special_ids if i is not None])
        return tokens

    def __call__(self, point_clouds=None, labels=None, return_tensors="pt", device=None, **kwargs) -> BatchFeature:
        """
        Args:
            point_clouds (`np.ndarray`, `torch.Tensor`, `str` or a list of them, *optional*):
                One cloud of shape `(N, 3+)` or a batch, as arrays, tensors or file paths.
            labels (`list[str]`, *optional*):
                Candidate labels.
            return_tensors (`str`, *optional*, defaults to `"pt"`):
                `"pt"` or `"np"` for the pixel values.
            device (`torch.device`, *optional*):
                Where to compute.

        Returns:
            [`BatchFeature`] with `pixel_values` of shape `(batch, views, 3, S, S)` and, for labels, the outputs of
            [`~PointCLIPProcessor.tokenize_labels`].
        """
        if point_clouds is None and labels is None:
            raise ValueError("Give point_clouds, labels, or both.")
        outputs = {}
        if point_clouds is not None:
            outputs.update(self.feature_extractor(point_clouds, return_tensors=return_tensors, device=device))
        if labels is not None:
            outputs.update(self.tokenize_labels(labels, device=device))
        return BatchFeature(outputs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "PointCLIPProcessor":
        """
        Load a saved processor as [`~ProcessorMixin.from_pretrained`] does, with `trust_remote_code=False` unless
        `True` is passed: an `auto_map` in the folder's tokenizer or feature-extractor config never runs its code (nor
        asks on standard input whether to).
        """
        source = str(pretrained_model_name_or_path)
        try:
            return super().from_pretrained(source, **with_explicit_trust(kwargs))
        except ValueError as error:
            message = " ".join(str(error).split())
            invalid = f"The processor saved in {source} ({PROCESSOR_NAME}) is invalid: {message}"
            raise ValueError(code_refused(error, source, PROCESSOR_CONFIG_FILES) or invalid) from None

    @classmethod
    def from_model_source(cls, source: str, config, **load_kwargs) -> "PointCLIPProcessor":
        """
        The processor that belongs to a model: the one saved beside it, else one built from the model's config (its
        projection, CLIP image size and prompts) and the tokenizer of its base CLIP.

        Args:
            source (`str`):
                The folder or Hub repo the model was loaded from.
            config ([`PointCLIPConfig`]):
                The model's configuration.
            load_kwargs:
                The Hub arguments the model was loaded with (`revision`, `token`, `cache_dir`, `local_files_only`,
                `subfolder`, `trust_remote_code`, ...), used for every file read here. Code saved in `source` (an
                `auto_map` in its tokenizer or processor config) runs only with `trust_remote_code=True`.
        """
        load_kwargs = with_explicit_trust(load_kwargs)
        if holds_pointclip_processor(source, **load_kwargs):
            return cls.from_pretrained(source, **load_kwargs)
        tokenizer = load_base_tokenizer(source, config, load_kwargs)
        feature_extractor = PointCLIPFeatureExtractor(
            projection_style=config.projection_style, image_size=config.clip_config.vision_config.image_size
        )
        return cls(feature_extractor, tokenizer, config.prompt_templates, config.class_prompts)

    @property
    def model_input_names(self):
        return ["pixel_values", "input_ids", "attention_mask", "prompt_class_ids"]


def processor_for_model(model, processor: PointCLIPProcessor | None = None) -> PointCLIPProcessor:
    r"""
    The processor to use with `model`: `processor` when given, else the one attached as `model.processor`, else the one
    that belongs to the model's source, loaded with the Hub arguments the model was loaded with (and then attached).

    Args:
        model ([`PointCLIPModel`]):
            The model.
        processor ([`PointCLIPProcessor`], *optional*):
            An explicit choice.
    """
    processor = processor or model.processor
    if processor.feature_extractor.projection_style != model.config.projection_style:
        raise ValueError(
            f"The processor projects with {processor.feature_extractor.projection_style!r}, the model was built for "
            f"{model.config.projection_style!r}."
        )
    return processor


def with_point_options(processor: PointCLIPProcessor, **options) -> PointCLIPProcessor:
    r"""
    `processor` with other point settings for its feature extractor: a copy when `options` change any, else
    `processor` itself.

    Args:
        processor ([`PointCLIPProcessor`]):
            The processor.
        options:
            New values of [`PointCLIPFeatureExtractor`] settings named in `POINT_OPTIONS` (`sampling`, `up_axis`).
    """
    extractor = processor.feature_extractor
    if all(getattr(extractor, key) == value for key, value in options.items()):
        return processor
    changed = copy.copy(processor)
    changed.feature_extractor = PointCLIPFeatureExtractor(**{**extractor.to_dict(), **options})
    return changed


def pop_point_options(kwargs: dict) -> dict:
    """Take the point settings of `POINT_OPTIONS` out of `from_pretrained` arguments `kwargs`, checked (a `ValueError`
    before anything is loaded); those given as `None` are dropped."""
    options = {key: kwargs.pop(key) for key in POINT_OPTIONS if key in kwargs}
    options = {key: value for key, value in options.items() if value is not None}
    PointCLIPFeatureExtractor(**options)
    return options


def holds_pointclip_processor(source: str, **load_kwargs) -> bool:
    """Whether `source` holds a saved `PointCLIPProcessor` (and not, say, a CLIP checkpoint's processor)."""
    hub_kwargs = {key: value for key, value in load_kwargs.items() if key != "trust_remote_code"}
    path = cached_file(source, PROCESSOR_NAME, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if path is None:
        return False
    with open(path, encoding="utf-8") as handle:
        saved = json.load(handle)
    return isinstance(saved, dict) and saved.get("processor_class") == "PointCLIPProcessor"


def with_explicit_trust(load_kwargs: dict) -> dict:
    """`load_kwargs` with `trust_remote_code` always given: `True` only when the user passed `True`. transformers' Auto
    classes ask `[y/N]` on standard input (and import the folder's module on `y`) when it is left unset."""
    return {**load_kwargs, "trust_remote_code": load_kwargs.get("trust_remote_code") is True}


def code_refused(error: Exception, source: str, files: str) -> str | None:
    """One line for transformers' refusal to run the code an `auto_map` in `files` of `source` names, when `error` is
    that refusal; else `None`."""
    if not isinstance(error, ValueError) or "trust_remote_code=True" not in str(error):
        return None
    return (
        f"{source} asks to run code saved with it (an auto_map in {files}); pointclip_hf runs a model folder's code "
        "only when you pass trust_remote_code=True and trust its author."
    )


def load_base_tokenizer(source: str, config, load_kwargs: dict):
    """The tokenizer saved in `source`, else the one of the base CLIP at its recorded revision (`load_kwargs` hold an
    explicit `trust_remote_code`, see `with_explicit_trust`)."""
    candidates = [(source, load_kwargs)]
    if config.clip_model_name_or_path and config.clip_model_name_or_path != source:
        base_kwargs = {key: value for key, value in load_kwargs.items() if key not in ("revision", "subfolder")}
        candidates.append((config.clip_model_name_or_path, {**base_kwargs, "revision": config.clip_revision}))
    refused = None
    for candidate, kwargs in candidates:
        try:
            return AutoTokenizer.from_pretrained(candidate, **kwargs)
        except (OSError, ValueError) as error:
            refused = code_refused(error, candidate, "tokenizer_config.json")
            if refused:
                break
    missing = (
        f"No tokenizer found in {[name for name, _ in candidates]}; pass processor=PointCLIPProcessor(...) explicitly."
    )
    raise ValueError(refused) if refused else OSError(missing)


__all__ = ["PointCLIPProcessor", "PointCLIPFeatureExtractor", "processor_for_model"]
