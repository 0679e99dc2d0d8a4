"""Whether a model's scores can tell labels apart. Finite but extreme weights break them without any error: an
`exp(logit_scale)` that overflows the compute dtype turns every score into NaN, one far below 1 (or an adapter whose
outputs overflow) makes every label score exactly `1 / K`. These checks run where a model enters use (when it is
loaded, when a pipeline or an evaluation takes it, in whatever dtype it then has) and name the weight to blame."""

import contextlib

import torch

from .dtype_policy import dtype_name

# CLIP learns logit_scale upwards from ln(1 / 0.07) = 2.66 (OpenAI's checkpoints hold ln(100)); below 0,
# exp(logit_scale) shrinks the logits instead of sharpening them, and far below (say -100) every score is exactly 1 / K.
MIN_LOGIT_SCALE = 0.0
PROBE_LABELS = 8


def check_scores_discriminate(model) -> None:
    r"""
    Raise a `ValueError` naming the cause when `model`, in its current dtype, cannot tell labels apart: an
    `exp(logit_scale)` that overflows or lies below 1, adapter outputs that overflow, or (for [`PointCLIPModel`]) a
    classification head whose logits on fixed pseudo-random view features are NaN or all equal.

    Args:
        model ([`PointCLIPModel`] or [`PointCLIPForZeroShotPartSegmentation`]):
            The model.
    """
    problem = logit_scale_problem(model)
    if problem is None and hasattr(model, "get_point_cloud_embeds"):
        problem = head_problem(model)
    if problem is not None:
        raise ValueError(f"{model.name_or_path} cannot tell labels apart: {problem}.")


def logit_scale_problem(model) -> str | None:
    """Why `exp(logit_scale)`, computed as the model computes it, is unusable (`None` when it is usable)."""
    logit_scale = model.clip.logit_scale.detach()
    scale = logit_scale.exp().to(model.dtype)
    where = f"in the CLIP weights of {model.config.clip_model_name_or_path or model.name_or_path}"
    if not torch.isfinite(scale):
        return f"logit_scale = {float(logit_scale):g} {where}: exp(logit_scale) overflows {dtype_name(model.dtype)}"
    if float(logit_scale) < MIN_LOGIT_SCALE:
        return (
            f"logit_scale = {float(logit_scale):g} {where}: exp(logit_scale) = {float(scale):.3g} shrinks every logit "
            f"(it must be at least {MIN_LOGIT_SCALE:g})"
        )
    return None


def head_problem(model) -> str | None:
    """Why the classification head (adapter, normalisation, view weights, scale) of a [`PointCLIPModel`] gives NaN or
    equal logits for `PROBE_LABELS` random labels (a cache head's own label count) on fixed pseudo-random view
    features (`None` when it does not)."""
    generator = torch.Generator().manual_seed(0)
    shape = (1, model.config.num_views, model.config.embed_dim)
    num_labels = model.cache.values.shape[1] if model.cache is not None else PROBE_LABELS
    view_features = torch.randn(shape, generator=generator).to(model.device, model.dtype)
    text_embeds = torch.randn(num_labels, shape[-1], generator=generator).to(model.device, model.dtype)
    with _adapter_in_eval_mode(model), torch.no_grad():
        problem = _adapter_problem(model, view_features)
        logits = model.forward(view_features=view_features, text_embeds=text_embeds).logits  # no forward hooks
    if problem is None and (not torch.isfinite(logits).all() or (logits == logits[:, :1]).all()):
        outcome = "NaN or infinite" if not torch.isfinite(logits).all() else "all equal"
        problem = (
            f"its logits are {outcome} in {dtype_name(model.dtype)} (exp(logit_scale) = "
            f"{float(model.clip.logit_scale.exp()):.3g}, view_weights {model.config.view_weights})"
        )
    return problem


@contextlib.contextmanager
def _adapter_in_eval_mode(model):
    """The adapter in eval mode (its BatchNorm statistics untouched), its mode restored after."""
    training = model.adapter is not None and model.adapter.training
    if model.adapter is not None:
        model.adapter.eval()
    try:
        yield
    finally:
        if model.adapter is not None:
            model.adapter.train(training)


def _adapter_problem(model, view_features: torch.Tensor) -> str | None:
    if model.adapter is None:
        return None
    adapted = model.adapter(view_features.to(model.adapter.view_fusion_weights.dtype)).flatten(1)
    norm = adapted.norm(dim=-1)
    if torch.isfinite(adapted).all() and torch.isfinite(norm).all() and (norm > 0).all():
        return None
    magnitudes = {name: float(t.abs().max()) for name, t in model.adapter.state_dict().items() if t.is_floating_point()}
    name = max(magnitudes, key=magnitudes.get)
    return (
        f"the adapter's outputs overflow: adapter.{name} (in the weights of {model.name_or_path}) holds values up to "
        f"{magnitudes[name]:.3g}"
    )


def check_finite_logits(logits: torch.Tensor, model, names) -> None:
    r"""
    Raise a `ValueError` naming the first cloud whose logits are NaN or infinite, with the model's likely cause when
    [`check_scores_discriminate`] finds one.

    Args:
        logits (`torch.Tensor` of shape `(batch, labels)`):
            The model's logits.
        model ([`PointCLIPModel`]):
            The model that computed them.
        names (`Sequence[str]`):
            How the message names each cloud.
    """
    finite = torch.isfinite(logits).all(dim=-1)
    if bool(finite.all()):
        return
    check_scores_discriminate(model)
    first = int((~finite).nonzero()[0])
    raise ValueError(
        f"The scores of {names[first]} are NaN or infinite: its features overflow {dtype_name(model.dtype)} in "
        f"{model.name_or_path}."
    )
