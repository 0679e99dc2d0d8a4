"""Ensembling PointCLIP with a fully trained 3D network (PointCLIP V1 paper; not in the official code).

The V1 paper adds the logits of 16-shot PointCLIP to those of a trained 3D classifier (PointNet++, DGCNN,
...) with a weight, and reports gains for every network. None of this is in the official code. Here the
ensemble weight is searched on a **validation** split, and the 3D network's logits come from a file
or a callable.

Formula (see `ensemble_logits`)::

    ensemble = (1 - alpha) * log_softmax(pointclip_logits) + alpha * log_softmax(other_logits)

Why log-softmax:

* The two sources live on unrelated scales. PointCLIP gives ``100 * sum_v w_v cos_v / sqrt(V)``, while a
  3D network's logits are unbounded and temperature-free. ``log_softmax`` puts both on a common,
  meaningful scale, the log-probability, and the result is the log of a weighted geometric mean of the
  two predictive distributions (a log-linear pool, or "product of experts"), up to a per-row constant.
* For the *decision* it is exactly the paper's weighted sum of raw logits. ``log_softmax`` subtracts a
  per-row constant (the log-sum-exp), so ``argmax`` of the ensemble equals ``argmax`` of
  ``(1 - alpha) * p + alpha * o``. The searched accuracy is therefore the paper's rule. Only the output
  scores change, and they become proper (unnormalised) log-probabilities that can be compared across
  clouds.
* The remaining scale mismatch (the temperatures of the two sources) is what ``alpha`` itself absorbs:
  the weight ratio ``alpha / (1 - alpha)`` on the default grid of 101 values covers 1:99 to 99:1.
* ``alpha = 0`` and ``alpha = 1`` give back the two sources' own predictions.

``normalize="zscore"`` standardises each row to zero mean and unit standard deviation across classes
instead. That is scale-free per cloud, and useful when a source's logit scale is so extreme (say 1e4
against 1) that the alpha grid would be wasted. ``normalize="none"`` uses the raw logits.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest

import numpy as np
import torch
from torch import Tensor

from ..argument_checks import check_numbers
from ..encoding import class_names_for, encode_dataset
from ..model.pipeline_pointclip import label_embeddings
from ..model.processing_pointclip import processor_for_model
from ._checks import check_label_ids, check_tensor
from .logits_files import read_logits_file

_NORMALIZATIONS = ("log_softmax", "zscore", "none")


def load_logits(source) -> Tensor:
    """
    Load a logits matrix, without ever unpickling.

    Args:
        source (`torch.Tensor`, `numpy.ndarray`, `str`, `os.PathLike` or `Callable`):
            A tensor or array of shape `(N, K)`; a path to a `.npy` file (`np.load(..., allow_pickle=False)`), a
            `.npz` file or a `.safetensors` file, where for the last two the key must be `"logits"` or the file
            must hold exactly one array (any other suffix, `.pt`, `.pth`, `.pkl`, ..., is refused, because loading
            it would require pickle); or a callable taking no arguments (for example a closure that runs a 3D
            network over the validation split), called here, whose return value is loaded by the rules above.

    Returns:
        `torch.Tensor` of shape `(N, K)` on the CPU. Floating dtypes are kept, and integer input becomes float32.
    """
    if callable(source):
        source = source()
    if isinstance(source, Tensor):
        out = source.detach().cpu()
    elif isinstance(source, np.ndarray):
        if source.dtype == object:
            raise ValueError("logits array has dtype=object; refusing to load (would need pickle)")
        out = torch.from_numpy(np.ascontiguousarray(source))
    elif isinstance(source, (str, os.PathLike)):
        out = read_logits_file(source)
    else:
        raise TypeError(
            f"cannot load logits from {type(source).__name__}; expected a Tensor, a numpy array, a path or a callable "
            "returning one of these"
        )
    out = check_tensor(out, "logits", "NK", dtype="real", finite=False)
    if not out.is_floating_point():
        out = out.to(torch.float32)
    return out


def check_class_order(expected: Sequence[str], given: Sequence[str]) -> None:
    """
    Raise a `ValueError`, showing the first mismatch, unless `given` lists the same classes as `expected`, in the
    same order: the logits columns of both sources must refer to the same classes.

    Args:
        expected (`Sequence[str]`):
            The class order of PointCLIP's logits.
        given (`Sequence[str]`):
            The class order of the other network's logits.
    """
    expected, given = list(expected), list(given)
    differ = [i for i, (e, g) in enumerate(zip_longest(expected, given)) if e != g]
    if differ:
        i = differ[0]
        e, g = (names[i] if i < len(names) else None for names in (expected, given))
        raise ValueError(
            f"class order mismatch at index {i}: expected {e!r} but got {g!r}; expected {len(expected)} classes but "
            f"got {len(given)} (the logits columns must follow the same label order)"
        )


@dataclass
class EnsembleResult:
    """
    Result of `search_ensemble_weight`.

    Args:
        alpha (`float`):
            The selected weight of the other (3D) network, in [0, 1].
        accuracy (`float`):
            Validation top-1 accuracy of the ensemble at `alpha`.
        pointclip_accuracy (`float`):
            Validation accuracy of PointCLIP alone.
        other_accuracy (`float`):
            Validation accuracy of the other network alone.
    """

    alpha: float
    accuracy: float
    pointclip_accuracy: float
    other_accuracy: float


def _check_pair(pointclip_logits, other_logits) -> tuple[Tensor, Tensor]:
    p = check_tensor(load_logits(pointclip_logits), "pointclip_logits", "NK", dtype="real")
    o = load_logits(other_logits)
    if o.shape[1] != p.shape[1]:
        raise ValueError(
            f"class count mismatch: other_logits has K = {o.shape[1]} classes but pointclip_logits has K = {p.shape[1]}"
        )
    o = check_tensor(o, "other_logits", "NK", dtype="real", sizes={"N": (p.shape[0], "pointclip_logits")})
    return p, o


def _normalize(x: Tensor, normalize: str) -> Tensor:
    x = x.to(torch.float64)
    if normalize == "log_softmax":
        return torch.log_softmax(x, dim=-1)
    if normalize == "zscore":
        centred = x - x.mean(dim=-1, keepdim=True)
        std = centred.pow(2).mean(dim=-1, keepdim=True).sqrt()
        return centred / std.clamp_min(torch.finfo(torch.float64).tiny)  # constant row -> all zeros
    if normalize == "none":
        return x
    raise ValueError(f"normalize must be one of {_NORMALIZATIONS}, got {normalize!r}")


def _check_alphas(alphas) -> Tensor:
    if alphas is None:
        alphas = torch.linspace(0, 1, 101, dtype=torch.float64)
    return check_tensor(torch.as_tensor(alphas, dtype=torch.float64).flatten(), "alphas", "G", bounds=(0, 1))


def ensemble_logits(pointclip_logits, other_logits, alpha: float, normalize: str = "log_softmax") -> Tensor:
    """
    `(1 - alpha) * norm(pointclip_logits) + alpha * norm(other_logits)`.

    Args:
        pointclip_logits (`torch.Tensor` of shape `(N, K)`, or anything `load_logits` accepts):
            PointCLIP's logits.
        other_logits (`torch.Tensor` of shape `(N, K)`, or anything `load_logits` accepts):
            The other network's logits, same classes in the same order.
        alpha (`float`):
            The weight of the other network, in [0, 1]: 0 is PointCLIP alone, 1 the other network alone.
        normalize (`str`, *optional*, defaults to `"log_softmax"`):
            `norm`: `"log_softmax"` over classes (see the module docstring for why), `"zscore"` (per-row
            standardisation) or `"none"`.

    Returns:
        `torch.Tensor` of shape `(N, K)`, float64.
    """
    p, o = _check_pair(pointclip_logits, other_logits)
    alpha = float(alpha)
    check_numbers({"alpha": alpha}, high=1)
    return (1.0 - alpha) * _normalize(p, normalize) + alpha * _normalize(o, normalize)


def search_ensemble_weight(
    pointclip_logits,
    other_logits,
    labels,
    alphas: Tensor | Sequence[float] | None = None,
    normalize: str = "log_softmax",
    *,
    class_names: Sequence[str] | None = None,
    other_class_names: Sequence[str] | None = None,
) -> EnsembleResult:
    """
    Pick the ensemble weight `alpha` that maximises validation top-1 accuracy. Every alpha is scored at once, in
    chunks that bound the memory. Predictions are the `argmax` over classes, and the lowest class index wins a tie.
    When several alphas reach the best accuracy, the **first one in the order given** is returned, so the default
    grid prefers the smallest weight for the other network.

    Args:
        pointclip_logits (`torch.Tensor` of shape `(N, K)`, or anything `load_logits` accepts):
            PointCLIP's validation logits.
        other_logits (`torch.Tensor` of shape `(N, K)`, or anything `load_logits` accepts):
            The other network's validation logits.
        labels (`torch.Tensor` of shape `(N,)`):
            Integer validation labels in `[0, K)`.
        alphas (`torch.Tensor` or `Sequence[float]`, *optional*):
            Candidate weights in [0, 1], `torch.linspace(0, 1, 101)` by default.
        normalize (`str`, *optional*, defaults to `"log_softmax"`):
            As in `ensemble_logits`.
        class_names (`Sequence[str]`, *optional*):
            PointCLIP's classes; their count is checked against `K`.
        other_class_names (`Sequence[str]`, *optional*):
            The other network's classes; with `class_names`, their order is checked by `check_class_order`.

    Returns:
        [`EnsembleResult`].
    """
    if class_names is not None and other_class_names is not None:
        check_class_order(class_names, other_class_names)
    p, o = _check_pair(pointclip_logits, other_logits)
    if class_names is not None:
        check_tensor(p, "pointclip_logits", "NK", dtype="real", sizes={"K": (len(class_names), "class_names")})
    n, k = p.shape
    labels = check_label_ids(labels, n, k)
    alphas = _check_alphas(alphas)
    pn, on = _normalize(p, normalize), _normalize(o, normalize)
    correct = torch.empty(alphas.numel(), dtype=torch.int64)
    chunk = max(1, (32 << 20) // (n * k * 8))  # about 32 MiB of float64 per chunk
    for a0 in range(0, alphas.numel(), chunk):
        a = alphas[a0 : a0 + chunk, None, None]
        z = (1.0 - a) * pn[None] + a * on[None]  # [A, N, K]
        correct[a0 : a0 + chunk] = (z.argmax(dim=-1) == labels[None]).sum(dim=-1)
    best = int(correct.max())
    first = int((correct == best).nonzero()[0])
    return EnsembleResult(
        alpha=float(alphas[first]),
        accuracy=best / n,
        pointclip_accuracy=float((p.argmax(dim=-1) == labels).double().mean()),
        other_accuracy=float((o.argmax(dim=-1) == labels).double().mean()),
    )


@torch.no_grad()
def pointclip_logits(model, dataset, batch_size: int = 32, progress: bool = True) -> tuple[Tensor, Tensor]:
    """
    PointCLIP's logits and the labels of a labelled dataset, from one CLIP pass; the input of
    `search_ensemble_weight`.

    Args:
        model ([`PointCLIPModel`]):
            Scores against `model.config.label_names`, or the dataset's `ClassLabel` names when unset.
        dataset (`datasets.Dataset`):
            Columns `points` and integer `label`.
        batch_size (`int`, *optional*, defaults to 32):
            Clouds encoded at a time.
        progress (`bool`, *optional*, defaults to `True`):
            Show progress bars.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: the logits of shape `(N, K)`, float32, and the labels of shape `(N,)`,
        both on the CPU.
    """
    class_names = class_names_for(model, dataset)
    features, labels = encode_dataset(model, dataset, batch_size=batch_size, progress=progress)
    text_embeds = label_embeddings(model, processor_for_model(model), class_names)
    logits = model(view_features=features, text_embeds=text_embeds).logits
    return logits.float().cpu(), labels.cpu()


__all__ = [
    "EnsembleResult",
    "check_class_order",
    "ensemble_logits",
    "load_logits",
    "pointclip_logits",
    "search_ensemble_weight",
]
