"""The search of the cache head's `alpha` and `beta` (Tip-Adapter's `search_hp`) on a *validation* split.

The grid is Tip-Adapter's: `beta_i = i * (beta_scale - 0.1) / beta_steps + 0.1` for `i < beta_steps`, the same for
alpha, both loops in that order (beta outer). The first pair with the best validation accuracy wins, as in Tip-Adapter's
`if acc > best_acc`; the prediction is the `argmax` over classes (the lowest class index wins a tie).
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import as_tensor, check_label_ids, check_tensor

# Tip-Adapter's ImageNet setting (`configs/imagenet.yaml`): beta in [0.1, 7), alpha in [0.1, 3).
DEFAULT_BETA_SCALE, DEFAULT_BETA_STEPS = 7.0, 200
DEFAULT_ALPHA_SCALE, DEFAULT_ALPHA_STEPS = 3.0, 20


@dataclass
class CacheSearchResult:
    """
    Result of `search_cache_weights`.

    Args:
        alpha (`float`):
            The selected residual weight of the cache.
        beta (`float`):
            The selected affinity sharpness.
        accuracy (`float`):
            Validation top-1 accuracy with the cache at `(alpha, beta)`.
        baseline_accuracy (`float`):
            Validation accuracy of the logits without the cache.
        num_candidates (`int`):
            The number of `(beta, alpha)` pairs tried.
        accuracies (`torch.Tensor` of shape `(betas, alphas)`):
            The validation accuracy of every pair.
    """

    alpha: float
    beta: float
    accuracy: float
    baseline_accuracy: float
    num_candidates: int
    accuracies: Tensor


def cache_search_grid(scale: float, steps: int) -> list[float]:
    r"""
    Tip-Adapter's candidate values: `i * (scale - 0.1) / steps + 0.1` for `i` in `range(steps)`.

    Args:
        scale (`float`):
            The (excluded) upper end, above 0.1.
        steps (`int`):
            The number of values.

    Returns:
        `list[float]`.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or not scale > 0.1:
        raise ValueError(f"A search grid needs scale > 0.1 and steps >= 1, got scale {scale} and steps {steps}.")
    return [i * (scale - 0.1) / steps + 0.1 for i in range(steps)]


def _check_candidates(values, name: str) -> Tensor:
    return check_tensor(torch.as_tensor(values, dtype=torch.float64).flatten(), name, "G", bounds=(0, math.inf))


@torch.no_grad()
def search_cache_weights(
    logits, affinity, values, labels, betas=None, alphas=None, chunk_bytes: int = 32 << 20
) -> CacheSearchResult:
    r"""
    Pick the cache's `alpha` and `beta` that maximise the validation accuracy of
    `logits + alpha * exp(-beta * (1 - affinity)) @ values`. Use the validation split only: the result is then frozen
    and applied to the test split.

    Args:
        logits (`torch.Tensor` of shape `(N, K)`):
            The validation logits without the cache (the model's text logits).
        affinity (`torch.Tensor` of shape `(N, entries)`):
            `features @ keys.T`, the validation clouds' fused features against the cache keys.
        values (`torch.Tensor` of shape `(entries, K)`):
            The cache values (one-hot labels).
        labels (`torch.Tensor` of shape `(N,)`):
            The validation labels.
        betas (`Sequence[float]`, *optional*):
            Candidate betas; Tip-Adapter's `cache_search_grid(7, 200)` by default.
        alphas (`Sequence[float]`, *optional*):
            Candidate alphas; Tip-Adapter's `cache_search_grid(3, 20)` by default.
        chunk_bytes (`int`, *optional*, defaults to 32 MiB):
            About how much float64 memory one group of alphas takes.

    Returns:
        [`CacheSearchResult`].
    """
    logits = as_tensor(logits, "logits").to(torch.float64)
    affinity = as_tensor(affinity, "affinity").to(torch.float64)
    values = as_tensor(values, "values").to(torch.float64)
    if logits.ndim != 2 or affinity.shape != (logits.shape[0], values.shape[0]) or values.shape[1:] != logits.shape[1:]:
        raise ValueError(
            f"Shapes do not fit: logits {tuple(logits.shape)} (N, K), affinity {tuple(affinity.shape)} (N, entries), "
            f"values {tuple(values.shape)} (entries, K)."
        )
    labels = check_label_ids(labels, *logits.shape)
    betas = _check_candidates(cache_search_grid(DEFAULT_BETA_SCALE, DEFAULT_BETA_STEPS) if betas is None else betas,
                              "betas")  # fmt: skip
    alphas = _check_candidates(
        cache_search_grid(DEFAULT_ALPHA_SCALE, DEFAULT_ALPHA_STEPS) if alphas is None else alphas, "alphas"
    )
    correct = torch.stack([_correct_per_alpha(logits, affinity, values, labels, beta, alphas, chunk_bytes)
                           for beta in betas.tolist()])  # fmt: skip
    best = int(correct.max())
    first = int((correct.flatten() == best).nonzero()[0])
    beta_index, alpha_index = divmod(first, len(alphas))
    return CacheSearchResult(
        alpha=float(alphas[alpha_index]),
        beta=float(betas[beta_index]),
        accuracy=best / len(labels),
        baseline_accuracy=float((logits.argmax(-1) == labels).double().mean()),
        num_candidates=correct.numel(),
        accuracies=correct.double() / len(labels),
    )


def _correct_per_alpha(logits, affinity, values, labels, beta: float, alphas: Tensor, chunk_bytes: int) -> Tensor:
    """The number of correct validation predictions for every alpha at one beta."""
    cache_logits = torch.exp(-beta * (1.0 - affinity)) @ values
    chunk = max(1, chunk_bytes // (logits.numel() * 8))
    correct = []
    for alpha in alphas.split(chunk):
        combined = logits[None] + alpha[:, None, None] * cache_logits[None]
        correct.append((combined.argmax(-1) == labels[None]).sum(-1))
    return torch.cat(correct)


__all__ = ["CacheSearchResult", "cache_search_grid", "search_cache_weights"]
