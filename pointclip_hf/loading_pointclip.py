"""How a PointCLIP model is loaded: its config, the base CLIP at its recorded commit, then the adapter weights."""


import os

import torch
from huggingface_hub import is_offline_mode
from huggingface_hub.errors import OfflineModeIsEnabled, StrictDataclassError
from safetensors import SafetensorError
from transformers import CLIPConfig, PreTrainedConfig
from transformers.utils import CONFIG_NAME, cached_file
from transformers.utils.hub import extract_commit_hash

from .adapter_weights import load_adapter_into, load_saved_tensors
from .cache_model import CACHE_PREFIX, CacheModel, load_cache_into
from .configuration_pointclip import PointCLIPConfig, config_class_for
from .local_paths import check_local_path_exists
from .processing_pointclip import pop_point_options
from .score_checks import check_scores_discriminate
from .weights_fingerprint import weights_state

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
    except StrictDataclassError as error:  # a field of config.json (or an override) out of range: one line
        raise ValueError(f"The config.json of {source} is invalid: {' '.join(str(error).split())}") from None
    except OSError as error:
        raise_if_not_cached_offline(error, source, source, hub_kwargs)
        raise
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
    if not isinstance(config_dict, dict):
        raise ValueError(f"The config.json of {source} is not a JSON object.")
    model_type = config_dict.get("model_type")
    if model_type not in ("pointclip", "pointclip_part_segmentation", "clip"):
        raise ValueError(f"{source} holds a {model_type!r} model; expected a PointCLIP or a CLIP checkpoint.")
    if config is not None and overrides:
        raise ValueError(f"Pass either config= or config fields {sorted(overrides)}, not both.")
    is_clip_checkpoint = model_type == "clip"
    saved_class = config_class if is_clip_checkpoint else config_class_for(config_dict)
    if config is None and saved_class is not config_class:
        raise ValueError(
            f"{source} holds a {saved_class.model_type!r} model, not a {config_class.model_type!r} one: load it with "
            "AutoModel.from_pretrained or the model class of its config."
        )
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
    except OSError as error:
        raise_if_not_cached_offline(error, base, described, base_kwargs)
        if "does not appear to have a file named" not in str(error):
            raise
        raise OSError(
            f"{described}{_at_commit(base_kwargs.get('revision'))} holds no model.safetensors (nor a sharded index): "
            "pointclip_hf reads CLIP weights only from safetensors, never a pickled pytorch_model.bin."
        ) from None
    except SafetensorError as error:
        raise ValueError(f"The CLIP weights in {base} are not a valid safetensors file ({error}).") from None
    except RuntimeError as error:
        if "mismatched_sizes" not in str(error) and "size mismatch" not in str(error):
            raise
        raise ValueError(f"The CLIP weights in {base} do not fit the sizes its config declares.") from None


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
    if cache is not None:
        _load_cache(cache, tensors, source)
    if not needs_adapter:
        return
    adapter = {key.removeprefix("adapter."): value for key, value in tensors.items() if key.startswith("adapter.")}
    if adapter:
        load_adapter_into(model.adapter, adapter, source)
    elif base != source or any(key.startswith("adapter.") for key in info["missing_keys"]):
        raise OSError(f"{source} asks for an adapter but holds no adapter weights.")


def _load_cache(cache: CacheModel, tensors: dict, source: str) -> None:
    """Load the `cache.*` tensors saved in `source` into the model's cache head."""
    saved = {key.removeprefix(CACHE_PREFIX): value for key, value in tensors.items() if key.startswith(CACHE_PREFIX)}
    if not saved:
        raise OSError(f"{source} asks for a cache (config.use_cache_head) but holds no cache tensors.")
    load_cache_into(cache, saved, source)


def _check_clip_weights_finite(model, base: str) -> None:
    """Raise a `ValueError` naming the first CLIP weights of `base` that hold NaN or infinite values."""
    broken = [name for name, tensor in model.clip.state_dict().items()
              if tensor.is_floating_point() and not torch.isfinite(tensor).all()]  # fmt: skip
    if broken:
        raise ValueError(f"The CLIP weights in {base} hold NaN or infinite values (in {broken[:3]}).")


def raise_if_not_cached_offline(error: OSError, name: str, described: str, hub_kwargs: dict) -> None:
    r"""
    Raise one line saying that `name` (at its revision) is not in the local Hugging Face cache while offline mode is
    on, when that is why `error` happened: transformers then speaks of a failed connection or of `use_safetensors`.

    Args:
        error (`OSError`):
            What loading `name` raised.
        name (`str`):
            The Hub repo id (a local folder is never the reason).
        described (`str`):
            How the message names it (e.g. as the base CLIP of a PointCLIP folder).
        hub_kwargs (`dict`):
            The Hub arguments it was loaded with: its `revision`, and `local_files_only` (which counts as offline).
    """
    offline = is_offline_mode() or hub_kwargs.get("local_files_only")
    if not offline or os.path.isdir(name):
        return
    switch = "HF_HUB_OFFLINE is set" if is_offline_mode() else "local_files_only=True"
    raise OfflineModeIsEnabled(
        f"{described}{_at_commit(hub_kwargs.get('revision'))} is not in the local Hugging Face cache, and offline mode "
        f"is on ({switch}): load it once online, or point to a local folder."
    ) from error


def _at_commit(revision: str | None) -> str:
    return f" at commit {revision}" if revision else ""
