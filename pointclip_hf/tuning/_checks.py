"""Input checks shared by the searches and the ensembles: features, text embeddings, labels, view weights."""

import math

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


_DIMENSIONS = {"N": "clouds", "V": "views", "C": "channels", "K": "classes", "S": "candidate sentences", "G": "values"}
_MISMATCHES = {"N": "number of clouds", "V": "view count", "C": "channel", "K": "class count"}
_DTYPES = {"float": "floating point", "int": "an integer tensor", "real": "real numbers"}


def _dtype_fits(x: Tensor, dtype: str) -> bool:
    if x.dtype == torch.bool or x.is_complex():
        return False
    return {"float": x.is_floating_point(), "int": not x.is_floating_point(), "real": True}[dtype]


def _tensor_problem(x: Tensor, name: str, dims: str, dtype: str, finite: bool, sizes: dict, bounds, distinct: bool):
    shape = tuple(x.shape)
    if x.ndim != len(dims):
        return f"{name} must have shape [{', '.join(dims)}], got {shape}"
    if not _dtype_fits(x, dtype):
        return f"{name} must be {_DTYPES[dtype]}, got {x.dtype}"
    empty = [dim for dim, size in zip(dims, shape) if size == 0]
    if empty:
        what = "empty validation split" if empty[0] == "N" else f"empty {name}"
        return f"{what}: {name} has no {_DIMENSIONS[empty[0]]} ({empty[0]} = 0)"
    for dim, size in zip(dims, shape):
        expected, owner = sizes.get(dim, (size, None))
        if size != expected:
            rows = " rows" if dim == "N" else ""
            return f"{_MISMATCHES[dim]} mismatch: {owner} have {dim} = {expected}{rows} but {name} has {dim} = {size}"
    if finite and not torch.isfinite(x).all():
        return f"{name} contain NaN or Inf"
    if bounds is not None and (x.min() < bounds[0] or x.max() > bounds[1]):
        allowed = "non-negative" if tuple(bounds) == (0, math.inf) else f"in [{bounds[0]}, {bounds[1]}]"
        return f"{name} out of range: found values in [{x.min().item()}, {x.max().item()}] but they must be {allowed}"
    if distinct and torch.unique(x).numel() != x.numel():
        return f"{name} values must be distinct, got {x.tolist()}"
    return None


def check_tensor(
    x, name: str, dims: str, *, dtype: str = "float", finite: bool = True, sizes=None, bounds=None, distinct=False
):
    """
    Check an array against what a search needs from it: the input checks of the searches and the ensembles.

    Args:
        x (`torch.Tensor` or array-like):
            The input.
        name (`str`):
            Its name in the `ValueError` raised on the first problem found.
        dims (`str`):
            One letter per dimension, such as `"NVC"`; every dimension must be non-empty (N = 0 is an empty validation
            split).
        dtype (`str`, *optional*, defaults to `"float"`):
            `"float"` (floating point), `"int"` (integer) or `"real"` (any real number: neither bool nor complex).
        finite (`bool`, *optional*, defaults to `True`):
            Refuse NaN and Inf.
        sizes (`dict[str, tuple[int, str]]`, *optional*):
            Required sizes: dimension letter to `(size, what has that size)`, such as `{"C": (512, "features")}`.
        bounds (`tuple[float, float]`, *optional*):
            The smallest and the largest allowed value.
        distinct (`bool`, *optional*, defaults to `False`):
            Refuse repeated values.

    Returns:
        `torch.Tensor` on the CPU, as given.
    """
    x = as_tensor(x, name)
    problem = _tensor_problem(x, name, dims, dtype, finite, sizes or {}, bounds, distinct)
    if problem is not None:
        raise ValueError(problem)
    return x


def check_features(features) -> Tensor:
    """
    Check cached validation features.

    Args:
        features (`torch.Tensor` of shape `(N, V, C)`):
            Floating-point, finite, with at least one cloud, view and channel.

    Returns:
        `torch.Tensor` of shape `(N, V, C)` on the CPU.
    """
    return check_tensor(features, "features", "NVC")


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
    return check_tensor(text_embeds, "text_embeds", "KC", dtype="real", finite=False, sizes={"C": (c, "features")})


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
    text = check_tensor(text, name, "KC", dtype="real").to(torch.float64)
    norms = text.norm(dim=-1, keepdim=True)
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
    sizes = {"N": (n, "the scores")}
    return check_tensor(labels, "labels", "N", dtype="int", sizes=sizes, bounds=(0, k - 1)).long()


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
    return check_tensor(weights, name, "V", sizes={"V": (v, "the features")}, bounds=(0, math.inf))


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
