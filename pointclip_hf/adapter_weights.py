"""Where PointCLIP weights are saved and loaded: only the small adapter (fp32 safetensors), never the frozen CLIP."""

import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers.utils import cached_file

WEIGHTS_NAME = "model.safetensors"
ADAPTER_PREFIX = "adapter."


def adapter_state_dict(state_dict: dict) -> dict:
    """Keep the `adapter.*` entries of a (possibly full) model state dict, floating tensors cast to fp32."""
    return {
        key: value.float() if value.is_floating_point() else value
        for key, value in state_dict.items()
        if key.startswith(ADAPTER_PREFIX)
    }


def load_adapter_state_dict(path_or_repo: str | os.PathLike, **hub_kwargs) -> dict:
    """
    Read the adapter tensors saved in `path_or_repo` (a folder or a Hub repo id) as a state dict with the
    `adapter.` prefix removed. Raises `OSError` if the file is missing and `ValueError` if it is not valid
    safetensors or holds no adapter tensors.
    """
    path = cached_file(path_or_repo, WEIGHTS_NAME, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if path is None:
        raise OSError(
            f"{path_or_repo} has no {WEIGHTS_NAME}: its config asks for a trained adapter, but the adapter weights are "
            "missing."
        )
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"Adapter weights {path} are not a valid safetensors file ({error}).") from None
    adapter = {key.removeprefix(ADAPTER_PREFIX): value for key, value in tensors.items() if key.startswith(ADAPTER_PREFIX)}
    if not adapter:
        raise ValueError(f"Adapter weights {path} hold no 'adapter.*' tensors (found {sorted(tensors)[:5]}...).")
    return adapter


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
    adapter.load_state_dict(state_dict)
