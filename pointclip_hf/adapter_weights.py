"""Where PointCLIP weights are saved and loaded: only the small heads (the adapter and the cache, fp32 safetensors),
never the frozen CLIP."""

import json
import os
from pathlib import PurePath

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers.utils import cached_file

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
ADAPTER_PREFIX = "adapter."
HEAD_PREFIXES = (ADAPTER_PREFIX, "cache.")


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
    if problems:
        raise ValueError(
            f"The adapter in {source} does not fit this model ({adapter.num_views} views, width {adapter.embed_dim}): "
            + "; ".join(problems[:6])
        )
    problems = adapter_tensor_problems(state_dict, expected)
    if problems:
        raise ValueError(f"The adapter in {source} holds unusable tensors: " + "; ".join(problems[:6]))
    adapter.load_state_dict(state_dict)


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
