"""The cache head of few-shot PointCLIP (the Tip-Adapter form): the fused features of K-shot support clouds as keys,
their one-hot labels as values, and the affinity of a cloud to every key added to its CLIP logits.

    logits = clip_logits + alpha * exp(-beta * (1 - f @ keys.T)) @ values

`f` is the cloud's fused feature (`fused_features`): the view-weighted point-cloud embedding that `classify` compares
with the text, flattened to `views * C` values and L2-normalised. Training-free (Tip-Adapter) the keys are the
normalised support features; fine-tuned (Tip-Adapter-F) they are a trainable parameter, the values stay fixed.
"""

import torch
import torch.nn.functional as F
from torch import nn

CACHE_PREFIX = "cache."


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
    problems = cache_tensor_problems(tensors, cache)
    if problems:
        raise ValueError(f"The cache in {source} does not fit this model: " + "; ".join(problems[:6]))
    cache.load_state_dict({key: value.float() for key, value in tensors.items()})
