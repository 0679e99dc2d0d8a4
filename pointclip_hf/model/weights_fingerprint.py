"""Content hashes of what a resumable run depends on: the model's CLIP weights and prepared point tensors."""

import hashlib
import weakref

import torch

from .modeling_pointclip import weights_state

_CLIP_HASHES = weakref.WeakKeyDictionary()


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    r"""
    SHA-256 of named tensors: their names, dtypes, shapes and bytes, in name order.

    Args:
        tensors (`dict[str, torch.Tensor]`):
            The tensors, on any device.

    Returns:
        `str`: the hex digest.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def clip_weights_sha256(model) -> str:
    r"""
    SHA-256 of the CLIP weights of a [`PointCLIPModel`] as they are in memory, so that a run resumed after the weights
    at the same path changed is told apart. Cached per model until a weight is replaced, moved or changed in place.

    Args:
        model ([`PointCLIPModel`]):
            The model.

    Returns:
        `str`: the hex digest (about half a second for CLIP ViT-B/16 on a CPU).
    """
    state = model.clip.state_dict()
    key = weights_state(model.clip)
    cached = _CLIP_HASHES.get(model)
    if cached is None or cached[0] != key:
        cached = _CLIP_HASHES[model] = (key, tensors_sha256(state))
    return cached[1]
