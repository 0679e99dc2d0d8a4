"""Input checks shared by the searches and the ensembles: features, text embeddings, labels, view weights."""

from __future__ import annotations

import torch
from torch import Tensor


def as_tensor(x, name: str) -> Tensor:
    """
    `x` as a detached CPU tensor.

    Args:
        x (`torch.Tensor` or array-like):
            The input.
        name (`str`):
            Its name in the `TypeError` raised when it cannot be converted.

    Returns:
        `torch.Tensor` on the CPU.
    """
    if isinstance(x, Tensor):
        return x.detach().cpu()
    try:
        return torch.as_tensor(x).cpu()
    except Exception as exc:  # pragma: no cover - defensive
        raise TypeError(f"{name} must be a tensor or array-like, got {type(x).__name__}") from exc


def check_features(features) -> Tensor:
    """
    Check cached validation features.

    Args:
        features (`torch.Tensor` of shape `(N, V, C)`):
            Floating-point, finite, with at least one cloud, view and channel.

    Returns:
        `torch.Tensor` of shape `(N, V, C)` on the CPU.
    """
    features = as_tensor(features, "features")
    if features.ndim != 3:
        raise ValueError(f"features must have shape [N, V, C], got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"features must be floating point, got {features.dtype}")
    n, v, c = features.shape
    if n == 0:
        raise ValueError("empty validation split: features has N = 0 clouds")
    if v == 0 or c == 0:
        raise ValueError(f"features must have V >= 1 views and C >= 1 channels, got {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or Inf")
    return features


def check_text_embeds(text_embeds, c: int) -> Tensor:
    """
    Check class text embeddings against the features' channel count.

    Args:
        text_embeds (`torch.Tensor` of shape `(K, C)`):
            At least one class.
        c (`int`):
            The features' channel count `C`.

    Returns:
        `torch.Tensor` of shape `(K, C)` on the CPU, not yet normalised (see `normalize_text`).
    """
    text_embeds = as_tensor(text_embeds, "text_embeds")
    if text_embeds.ndim != 2:
        raise ValueError(f"text_embeds must have shape [K, C], got {tuple(text_embeds.shape)}")
    if text_embeds.shape[0] == 0:
        raise ValueError("text_embeds must contain at least one class (K = 0)")
    if text_embeds.shape[1] != c:
        raise ValueError(f"channel mismatch: features have C = {c} but text_embeds have C = {text_embeds.shape[1]}")
    return text_embeds


def normalize_text(text: Tensor, name: str) -> Tensor:
    """
    L2-normalise text embeddings in float64.

    Args:
        text (`torch.Tensor` of shape `(K, C)`):
            Finite rows of non-zero norm.
        name (`str`):
            Their name in messages.

    Returns:
        `torch.Tensor` of shape `(K, C)`, float64, unit rows.
    """
    text = text.to(torch.float64)
    norms = text.norm(dim=-1, keepdim=True)
    if not torch.isfinite(text).all():
        raise ValueError(f"{name} contain NaN or Inf")
    if (norms == 0).any():
        bad = int((norms.flatten() == 0).nonzero()[0])
        raise ValueError(f"{name} row {bad} has zero norm and cannot be L2-normalised")
    return text / norms


def check_label_ids(labels, n: int, k: int) -> Tensor:
    """
    Check labels against the scores they go with.

    Args:
        labels (`torch.Tensor` of shape `(N,)` or `(N, 1)`):
            Integer class ids in `[0, k)`; the reference loaders keep labels as `(N, 1)`.
        n (`int`):
            The number of scored clouds.
        k (`int`):
            The number of classes.

    Returns:
        `torch.Tensor` of shape `(N,)`, int64; a `ValueError` naming what is wrong otherwise.
    """
    labels = as_tensor(labels, "labels")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape [N], got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.shape[0] == 0:
        raise ValueError("empty validation split: labels has N = 0 entries")
    if labels.shape[0] != n:
        raise ValueError(
            f"number of clouds mismatch: the scores have N = {n} rows but labels has N = {labels.shape[0]}"
        )
    labels = labels.long()
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= k:
        raise ValueError(f"labels out of range: found values in [{lo}, {hi}] but there are K = {k} classes")
    return labels


def check_view_weights(weights, v: int, name: str = "view_weights") -> Tensor:
    """
    Check per-view weights.

    Args:
        weights (`torch.Tensor` or `Sequence[float]` of length `V`):
            Finite, non-negative.
        v (`int`):
            The number of views.
        name (`str`, *optional*, defaults to `"view_weights"`):
            Their name in messages.

    Returns:
        `torch.Tensor` of shape `(V,)`, float64.
    """
    weights = as_tensor(weights, name).to(torch.float64).flatten()
    if weights.numel() != v:
        raise ValueError(f"{name} must have V = {v} entries, got {weights.numel()}")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"{name} must be finite and non-negative, got {weights.tolist()}")
    return weights


def view_logits64(features: Tensor, text: Tensor) -> Tensor:
    """
    Per-view logits in float64.

    Args:
        features (`torch.Tensor` of shape `(N, V, C)`):
            Used as given.
        text (`torch.Tensor` of shape `(K, C)`):
            Normalised float64 text embeddings.

    Returns:
        `torch.Tensor` of shape `(N, V, K)`, float64.
    """
    return torch.einsum("nvc,kc->nvk", features.to(torch.float64), text)
