"""The trained heads of few-shot PointCLIP and their saved tensors.

The inter-view adapter: where the CLIP features of all views become one global feature and are redistributed to the
views (`class Adapter` of the official `trainers/fewshot.py`).

The cache head (the Tip-Adapter form): the fused features of K-shot support clouds as keys, their one-hot labels as
values, and the affinity of a cloud to every key added to its CLIP logits.

    logits = clip_logits + alpha * exp(-beta * (1 - f @ keys.T)) @ values

`f` is the cloud's fused feature (`fused_features`): the view-weighted point-cloud embedding that `classify` compares
with the text, flattened to `views * C` values and L2-normalised. Training-free (Tip-Adapter) the keys are the
normalised support features; fine-tuned (Tip-Adapter-F) they are a trainable parameter, the values stay fixed.
"""

import json
import os
from pathlib import PurePath

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers.utils import cached_file

# Official parameter names (the `Adapter` of ZrrSkywalker/PointCLIP) -> ours.
REFERENCE_ADAPTER_KEYS = {
    "fusion_ratio": "view_fusion_weights",
    "global_f.0.bn.": "view_norm.",
    "global_f.3.": "global_proj.",
    "global_f.4.": "global_norm.",
    "view_f.0.": "view_mlp_in.",
    "view_f.2.": "view_mlp_out.",
}


class InterViewAdapter(nn.Module):
    """
    Fuses the `V` view features of a cloud into one global feature, maps it back to `V` adapted view features, and mixes
    them with the inputs: `out = ratio * view_mlp(global(x * fusion)) + (1 - ratio) * x`.

    Args:
        num_views: `V`.
        embed_dim: `C`, the width of CLIP's image embedding.
        ratio: weight of the adapted features in the residual mix (0.6 in PointCLIP).
        init: initial per-view fusion weight (0.5).
        dropout: dropout probability at both places of the global branch (0.075).
    """

    def __init__(self, num_views: int, embed_dim: int, ratio: float = 0.6, init: float = 0.5, dropout: float = 0.075):
        super().__init__()
        self.num_views = num_views
        self.embed_dim = embed_dim
        self.ratio = ratio
        self.init = init
        self.view_fusion_weights = nn.Parameter(torch.full((num_views,), float(init)))
        self.view_norm = nn.BatchNorm1d(embed_dim)  # statistics shared by all views
        self.view_dropout = nn.Dropout(dropout)
        self.global_proj = nn.Linear(num_views * embed_dim, embed_dim)
        self.global_norm = nn.BatchNorm1d(embed_dim)
        self.global_dropout = nn.Dropout(dropout)
        self.view_mlp_in = nn.Linear(embed_dim, embed_dim)
        self.view_mlp_out = nn.Linear(embed_dim, num_views * embed_dim)

    def forward(self, view_features: torch.Tensor) -> torch.Tensor:
        """`view_features` `[batch, views, C]` -> adapted view features `[batch, views, C]`."""
        batch, views, width = view_features.shape
        problem = (
            f"The adapter expects {self.num_views} views of width {self.embed_dim}, got {views} of width {width}."
            if (views, width) != (self.num_views, self.embed_dim)
            else "Training the adapter needs at least 2 clouds per batch (its BatchNorm needs statistics)."
            if self.training and batch < 2 else None
        )  # fmt: skip
        if problem:
            raise ValueError(problem)
        fused = view_features * self.view_fusion_weights[None, :, None]
        fused = self.view_norm(fused.reshape(batch * views, width)).reshape(batch, views * width)
        global_feature = self.global_proj(self.view_dropout(fused))
        global_feature = self.global_dropout(torch.relu(self.global_norm(global_feature)))
        adapted = torch.relu(self.view_mlp_out(torch.relu(self.view_mlp_in(global_feature))))
        mixed = self.ratio * adapted + (1.0 - self.ratio) * view_features.reshape(batch, views * width)
        return mixed.reshape(batch, views, width)


def convert_reference_adapter(state_dict: dict) -> dict:
    """
    Map an adapter state dict saved by the official PointCLIP code (`fusion_ratio`, `global_f.*`, `view_f.*`, as in
    `adapter/model-best.pth.tar["state_dict"]`) to the names of [`InterViewAdapter`]. Keys may carry a module prefix
    such as `adapter.` or `module.`. Raises if a key is not an adapter parameter.
    """
    converted = {}
    for key, value in state_dict.items():
        name = key.split("adapter.", 1)[-1].removeprefix("module.")
        for reference, ours in REFERENCE_ADAPTER_KEYS.items():
            if name == reference or (reference.endswith(".") and name.startswith(reference)):
                converted[ours + name[len(reference) :]] = value
                break
        else:
            raise ValueError(f"{key!r} is not a parameter of the reference PointCLIP adapter.")
    return converted


WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
ADAPTER_PREFIX = "adapter."
CACHE_PREFIX = "cache."
HEAD_PREFIXES = (ADAPTER_PREFIX, CACHE_PREFIX)


def adapter_state_dict(state_dict: dict) -> dict:
    """Keep the head entries (`adapter.*`, `cache.*`) of a (possibly full) model state dict, floating tensors cast to
    fp32."""
    return {
        key: value.float() if value.is_floating_point() else value
        for key, value in state_dict.items()
        if key.startswith(HEAD_PREFIXES)
    }


def weights_file_name(name: str, variant: str | None) -> str:
    """`model.safetensors` -> `model.{variant}.safetensors`, as transformers names variant files."""
    if variant is None:
        return name
    parts = name.split(".")
    return ".".join([*parts[:-1], variant, parts[-1]])


def saved_weight_files(path_or_repo: str | os.PathLike, variant: str | None = None, **hub_kwargs) -> list[str]:
    """
    The local paths of the weights saved in `path_or_repo`: one `model.safetensors`, or the shards its index names.

    Args:
        path_or_repo (`str` or `os.PathLike`):
            A folder or a Hub repo id.
        variant (`str`, *optional*):
            The weights variant.
        hub_kwargs:
            `revision`, `token`, `cache_dir`, ... for `cached_file`.

    Returns:
        `list[str]`, empty when no weights are saved there.
    """
    single = cached_file(path_or_repo, weights_file_name(WEIGHTS_NAME, variant),
                         _raise_exceptions_for_missing_entries=False, **hub_kwargs)  # fmt: skip
    if single is not None:
        return [single]
    index = cached_file(path_or_repo, weights_file_name(WEIGHTS_INDEX_NAME, variant),
                        _raise_exceptions_for_missing_entries=False, **hub_kwargs)  # fmt: skip
    if index is None:
        return []
    return [cached_file(path_or_repo, shard, **hub_kwargs) for shard in shard_names(index)]


def shard_names(index: str) -> list[str]:
    """
    The shard files a weights index names, each checked to stay inside the model folder (no absolute path, no `..`)
    before any of them is opened. The names are checked as written, not resolved: in the Hub cache every file is a
    symbolic link into the cache's blob store.

    Args:
        index (`str`):
            The local path of `model.safetensors.index.json`.

    Raises:
        `ValueError` naming `index` when it is not a valid index or a shard name leaves the folder.
    """
    try:
        with open(index, encoding="utf-8") as handle:
            shards = sorted(set(json.load(handle)["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"The weights index {index} is not a valid index file ({error}).") from None
    for shard in shards:
        if not isinstance(shard, str) or not shard or PurePath(shard).anchor or ".." in PurePath(shard).parts:
            raise ValueError(
                f"The weights index {index} names a shard outside the model folder ({shard!r}): shard names must be "
                "file names inside the folder."
            )
    return shards


def load_saved_tensors(path_or_repo: str | os.PathLike, variant: str | None = None, required: bool = True,
                       **hub_kwargs) -> dict:  # fmt: skip
    """
    Read every tensor saved in `path_or_repo` (single or sharded safetensors).

    Args:
        path_or_repo (`str` or `os.PathLike`):
            A folder or a Hub repo id.
        variant (`str`, *optional*):
            The weights variant.
        required (`bool`, *optional*, defaults to `True`):
            Raise an `OSError` when no weights are saved there (else return `{}`).
        hub_kwargs:
            `revision`, `token`, `cache_dir`, ... for `cached_file`.

    Raises:
        `OSError` if the weights are missing (and required), `ValueError` if a file is not valid safetensors.
    """
    files = saved_weight_files(path_or_repo, variant, **hub_kwargs)
    if not files and required:
        raise OSError(
            f"{path_or_repo} has no {weights_file_name(WEIGHTS_NAME, variant)}: its config asks for a trained "
            "adapter or cache, but their weights are missing."
        )
    tensors = {}
    for path in files:
        try:
            tensors.update(load_file(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"Weights {path} are not a valid safetensors file ({error}).") from None
    return tensors


def load_adapter_into(adapter: torch.nn.Module, state_dict: dict, source: str) -> None:
    """Copy `state_dict` into `adapter`, raising a `ValueError` that names every missing, extra or misshaped tensor."""
    expected = adapter.state_dict()
    problems = [f"missing {key}" for key in expected if key not in state_dict]
    problems += [f"unexpected {key}" for key in state_dict if key not in expected]
    problems += [
        f"{key} has shape {tuple(state_dict[key].shape)} but the model needs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and state_dict[key].shape != value.shape
    ]
    what = f"does not fit this model ({adapter.num_views} views, width {adapter.embed_dim})"
    if not problems:
        what, problems = "holds unusable tensors", adapter_tensor_problems(state_dict, expected)
    _load_head(adapter, state_dict, f"The adapter in {source} {what}", problems)


def _load_head(head: nn.Module, tensors: dict, described: str, problems: list[str]) -> None:
    """Load `tensors` into a trained head, or raise a `ValueError` `described` with the first `problems`."""
    if problems:
        raise ValueError(f"{described}: " + "; ".join(problems[:6]))
    head.load_state_dict(tensors)


def adapter_tensor_problems(state_dict: dict, expected: dict) -> list[str]:
    """
    What makes saved adapter tensors unusable although their names and shapes fit: a dtype of another kind than the
    model's (an integer tensor for a floating one would be cast silently), NaN or infinite values, or a negative
    BatchNorm `running_var` (its square root is NaN).

    Args:
        state_dict (`dict[str, torch.Tensor]`):
            The saved tensors, keys as in `expected`.
        expected (`dict[str, torch.Tensor]`):
            The adapter's own state dict.

    Returns:
        `list[str]`, one line per problem (empty when the tensors are usable).
    """
    problems = []
    for key, value in state_dict.items():
        if value.is_floating_point() != expected[key].is_floating_point():
            problems.append(f"{key} has dtype {value.dtype} but the model needs {expected[key].dtype}")
        elif value.is_floating_point() and not torch.isfinite(value).all():
            problems.append(f"{key} holds NaN or infinite values")
        elif key.endswith("running_var") and (value < 0).any():
            problems.append(f"{key} holds negative variances")
    return problems


def fused_features(point_cloud_embeds: torch.Tensor) -> torch.Tensor:
    r"""
    The fused feature of each cloud: its view blocks side by side, L2-normalised over all `views * C` values.

    Args:
        point_cloud_embeds (`torch.Tensor` of shape `(batch, views, C)`):
            From [`~PointCLIPModel.get_point_cloud_embeds`] (view weights applied).

    Returns:
        `torch.Tensor` of shape `(batch, views * C)`.
    """
    return F.normalize(point_cloud_embeds.flatten(1), dim=-1)


def affinity_logits(features: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, beta: float) -> torch.Tensor:
    r"""
    Tip-Adapter's cache logits before the residual weight: `exp(-beta * (1 - features @ keys.T)) @ values`.

    Args:
        features (`torch.Tensor` of shape `(batch, D)`):
            L2-normalised query features.
        keys (`torch.Tensor` of shape `(entries, D)`):
            Cache keys.
        values (`torch.Tensor` of shape `(entries, labels)`):
            Cache values (one-hot labels, or any per-entry class weights).
        beta (`float`):
            The sharpness of the affinity.

    Returns:
        `torch.Tensor` of shape `(batch, labels)`.
    """
    return torch.exp(-beta * (1.0 - features @ keys.T)) @ values


class CacheModel(nn.Module):
    r"""
    A key-value cache of support features (Tip-Adapter). Its logits for a cloud depend only on that cloud: each cloud
    is a separate product of fixed shape, so they never depend on the rest of the batch.

    Args:
        num_entries (`int`):
            The number of cached support clouds (shots times classes).
        feature_dim (`int`):
            The width of a fused feature, `views * C`.
        num_labels (`int`):
            The number of classes.
    """

    def __init__(self, num_entries: int, feature_dim: int, num_labels: int):
        super().__init__()
        self.keys = nn.Parameter(torch.zeros(num_entries, feature_dim))
        self.register_buffer("values", torch.zeros(num_entries, num_labels))

    def forward(self, features: torch.Tensor, beta: float) -> torch.Tensor:
        r"""
        Args:
            features (`torch.Tensor` of shape `(batch, views * C)`):
                Fused features from [`fused_features`].
            beta (`float`):
                The sharpness of the affinity (`config.cache_beta`).

        Returns:
            `torch.Tensor` of shape `(batch, labels)`: the cache logits, before the weight `config.cache_alpha`.
        """
        features = features.to(self.keys.dtype)
        return torch.cat([affinity_logits(cloud, self.keys, self.values, beta) for cloud in features.split(1)])

    def set_entries(self, keys: torch.Tensor, label_ids: torch.Tensor) -> None:
        r"""
        Fill the cache with support features and their labels.

        Args:
            keys (`torch.Tensor` of shape `(num_entries, feature_dim)`):
                L2-normalised fused features of the support clouds.
            label_ids (`torch.Tensor` of shape `(num_entries,)`):
                Their class ids.
        """
        with torch.no_grad():
            self.keys.copy_(keys)
            self.values.copy_(F.one_hot(label_ids.long(), self.values.shape[1]))


def cache_tensor_problems(tensors: dict, cache: CacheModel) -> list[str]:
    r"""
    What makes saved cache tensors unusable for `cache`: a missing, extra or misshaped tensor, a non-floating dtype,
    NaN or infinite values, or values that are not one-hot rows.

    Args:
        tensors (`dict[str, torch.Tensor]`):
            The saved tensors, keys without the `cache.` prefix.
        cache ([`CacheModel`]):
            The model's cache head.

    Returns:
        `list[str]`, one line per problem (empty when the tensors are usable).
    """
    expected = cache.state_dict()
    problems = [f"missing {key}" for key in expected if key not in tensors]
    problems += [f"unexpected {key}" for key in tensors if key not in expected]
    for key, value in tensors.items():
        if key not in expected:
            continue
        if value.shape != expected[key].shape:
            problems.append(f"{key} has shape {tuple(value.shape)} but the model needs {tuple(expected[key].shape)}")
        elif not value.is_floating_point():
            problems.append(f"{key} has dtype {value.dtype} but the model needs a floating dtype")
        elif not torch.isfinite(value).all():
            problems.append(f"{key} holds NaN or infinite values")
    values = tensors.get("values")
    if not problems and not (((values == 0) | (values == 1)).all() and (values.sum(-1) == 1).all()):
        problems.append("values are not one-hot rows (one 1 per cached cloud)")
    return problems


def load_cache_into(cache: CacheModel, tensors: dict, source: str) -> None:
    r"""
    Copy saved cache tensors into `cache`, raising a `ValueError` that names every problem.

    Args:
        cache ([`CacheModel`]):
            The model's cache head.
        tensors (`dict[str, torch.Tensor]`):
            The saved tensors, keys without the `cache.` prefix.
        source (`str`):
            Where they come from, for the message.
    """
    tensors_fp32 = {key: value.float() for key, value in tensors.items()}
    _load_head(
        cache, tensors_fp32, f"The cache in {source} does not fit this model", cache_tensor_problems(tensors, cache)
    )
