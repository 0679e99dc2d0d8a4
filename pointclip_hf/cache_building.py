"""`build_cache`: the cache head of a PointCLIP model (Tip-Adapter) from few-shot support clouds, with its `alpha` and
`beta` searched on a validation split (never the test split); and `search_cache_on_validation`, the same search for a
cache whose keys were fine-tuned (Tip-Adapter-F, through `train_adapter` or `transformers.Trainer`).

The keys are the fused features `classify` compares with the text (see `inter_view_adapter.fused_features`), computed
with the model's heads as they are: a model with an inter-view adapter caches the adapted features.
"""

import os
from collections.abc import Sequence

import numpy as np
import torch
from datasets import Dataset

from .argument_checks import check_counts, check_numbers
from .data import few_shot_subset, load_point_cloud_dataset, point_features, train_validation_split
from .encoding import check_labelled_dataset, class_names_for, encode_split, prepare_split
from .io import load_point_cloud
from .model.inter_view_adapter import fused_features
from .model.pipeline_pointclip import label_embeddings
from .model.processing_pointclip import processor_for_model
from .model.prompts import check_labels
from .tuning.cache_search import CacheSearchResult, search_cache_weights


def labelled_dataset(source, labels: Sequence[str] | None, label_names: list[str] | None, what: str) -> Dataset:
    r"""
    A labelled point-cloud dataset from what `build_cache` accepts.

    Args:
        source (`datasets.Dataset`, `str`, `os.PathLike` or a list of file paths):
            A dataset with `points` and `label` columns; a folder or dataset name for `load_point_cloud_dataset`
            (its `"train"` split); or point-cloud files.
        labels (`Sequence[str]`, *optional*):
            One class name per file (files only).
        label_names (`list[str]`, *optional*):
            The class order of the files' dataset; by default the sorted distinct `labels`.
        what (`str`):
            How messages name the source (`"support"`, `"validation"`).

    Returns:
        `datasets.Dataset` with columns `points` and `label`.
    """
    if isinstance(source, (Dataset, str, os.PathLike)):
        if labels is not None:
            raise ValueError(f"The {what} set is a dataset, a folder or a dataset name, whose 'label' column holds the "
                             "labels: do not pass labels.")  # fmt: skip
        return source if isinstance(source, Dataset) else load_point_cloud_dataset(source, split="train")
    paths = list(source)
    labels = None if labels is None or isinstance(labels, str) else [str(label) for label in labels]
    if labels is None or len(labels) != len(paths):
        count = "no list of" if labels is None else len(labels)
        raise ValueError(f"The {what} files need a list of labels, one per file: got {len(paths)} files and {count} "
                         "labels.")  # fmt: skip
    names = check_labels(label_names or sorted(set(labels)))
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ValueError(f"The {what} labels {unknown[:5]} are not among the model's classes {names}.")
    clouds = [load_point_cloud(path)[:, :3] for path in paths]
    return Dataset.from_dict(
        {"points": clouds, "label": [names.index(label) for label in labels]}, features=point_features(names)
    )


def _check_support_classes(label_ids: np.ndarray, class_names: list[str], shots: int | None) -> None:
    """A `ValueError` naming every class with no support cloud (or fewer than `shots`)."""
    counts = np.bincount(label_ids, minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts) if count == 0]
    short = [f"{name!r} has {count}" for name, count in zip(class_names, counts) if shots and count < shots]
    if empty or short:
        raise ValueError(
            f"The classes {empty[:10]} have no support example: every class needs at least one cloud in the cache."
            if empty
            else f"shots={shots} needs {shots} support clouds per class, but {', '.join(short[:10])}; lower shots, or "
            "pass shots=None to cache every support cloud."
        )


def _split_support(support: Dataset, validation, search: bool, fraction: float, seed: int):
    """`(support pool, validation set or None, how the validation set was made)`."""
    if validation is not None or not search:
        return support, validation, "given" if validation is not None else None
    pool, carved = train_validation_split(support, fraction, seed=seed)
    if len(carved) == 0:
        raise ValueError(
            "No validation cloud could be carved from the support set (every class has a single example): pass "
            "validation=... or search=False (and alpha, beta)."
        )
    return pool, carved, f"carved from the support set (fraction {fraction}, seed {seed})"


@torch.no_grad()
def _encode(model, dataset: Dataset, name: str, class_names: list[str], batch_size: int, progress: bool):
    """`(view features (N, views, C), fused features (N, views * C), label ids (N,))` of a labelled dataset."""
    extractor = processor_for_model(model).feature_extractor
    split = prepare_split(dataset, name, class_names, extractor, model.device, batch_size, progress)
    features = encode_split(model, extractor, split, batch_size, progress)
    return features, fused_features(model.get_point_cloud_embeds(features)), split.labels


def build_cache(
    model,
    support,
    labels: Sequence[str] | None = None,
    *,
    shots: int | None = 16,
    seed: int = 0,
    validation=None,
    validation_labels: Sequence[str] | None = None,
    validation_fraction: float = 0.2,
    search: bool = True,
    alpha: float = 1.0,
    beta: float = 1.0,
    betas: Sequence[float] | None = None,
    alphas: Sequence[float] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    r"""
    Give `model` a cache head (Tip-Adapter, training-free): the fused features of `shots` support clouds per class as
    keys, their one-hot labels as values, and `alpha`, `beta` searched on a validation split. The model's
    `config.label_names` become the support classes (unless already set, e.g. by an adapter, which then must match),
    their text embeddings are stored, and `save_pretrained` / `push_to_hub` save the cache with the model.

    Args:
        model ([`PointCLIPModel`]):
            The model, changed in place (any earlier cache is replaced).
        support (`datasets.Dataset`, `str`, `os.PathLike` or a list of file paths):
            Labelled support clouds: a dataset with `points` and `label` columns, a folder or dataset name (its
            `"train"` split), or point-cloud files with `labels`.
        labels (`Sequence[str]`, *optional*):
            One class name per support file.
        shots (`int`, *optional*, defaults to 16):
            Support clouds per class, drawn with `few_shot_subset(seed)`; `None` caches every support cloud.
        seed (`int`, *optional*, defaults to 0):
            Seed of the draw and of the carved validation split.
        validation (`datasets.Dataset`, `str`, `os.PathLike` or a list of file paths, *optional*):
            The validation split of the search (never the test split); by default `validation_fraction` of every
            class is carved from `support` before the shots are drawn.
        validation_labels (`Sequence[str]`, *optional*):
            One class name per validation file.
        validation_fraction (`float`, *optional*, defaults to 0.2):
            The share of every class carved from `support` when `validation` is not given.
        search (`bool`, *optional*, defaults to `True`):
            Search `alpha` and `beta` on the validation split (Tip-Adapter's grid); `False` keeps `alpha` and `beta`.
        alpha (`float`, *optional*, defaults to 1.0), beta (`float`, *optional*, defaults to 1.0):
            The cache weights when `search=False`.
        betas (`Sequence[float]`, *optional*), alphas (`Sequence[float]`, *optional*):
            Other search candidates (see `search_cache_weights`).
        batch_size (`int`, *optional*, defaults to 32):
            Clouds rendered and encoded at a time.
        progress (`bool`, *optional*, defaults to `True`):
            Show progress bars.

    Returns:
        `dict`: how the cache was built (support counts, seed, validation split, search result), also stored as
        `config.cache_info` for the model card.
    """
    check_counts({"batch_size": batch_size, "shots": shots}, optional=("shots",))
    support = labelled_dataset(support, labels, model.config.label_names, "support")
    class_names = check_labels(list(class_names_for(model, support)))
    _check_support_classes(check_labelled_dataset(support, "support", class_names), class_names, None)
    if validation is not None:
        validation = labelled_dataset(validation, validation_labels, class_names, "validation")
    pool, validation, validation_source = _split_support(support, validation, search, validation_fraction, seed)
    _check_support_classes(check_labelled_dataset(pool, "support", class_names), class_names, shots)
    chosen = pool if shots is None else few_shot_subset(pool, shots, seed=seed)
    validation_info = None if validation is None else {"source": validation_source, "size": len(validation)}
    model.eval()
    _, keys, label_ids = _encode(model, chosen, "support", class_names, batch_size, progress)
    text = label_embeddings(model, processor_for_model(model), class_names)
    found = None
    if search:
        scored = _validation_scores(model, validation, class_names, text, batch_size, progress)
        found = _search(scored, keys, torch.nn.functional.one_hot(label_ids, len(class_names)), betas, alphas)
        alpha, beta = found.alpha, found.beta
    _install(model, class_names, text, keys, label_ids, float(alpha), float(beta))
    model.config.cache_info = _cache_info(label_ids, len(class_names), seed, validation_info, found)
    return dict(model.config.cache_info)


def _cache_info(label_ids: torch.Tensor, num_labels: int, seed: int, validation: dict | None, found) -> dict:
    """How the cache was built, for `config.cache_info`: shots (when every class has as many), seed, validation
    split, search."""
    counts = np.bincount(label_ids.cpu().numpy(), minlength=num_labels)
    return {
        "shots": int(counts[0]) if (counts == counts[0]).all() else None,
        "num_cached": len(label_ids),
        "seed": seed,
        "validation": validation,
        "search": None if found is None else _search_summary(found),
        "fine_tuning": None,
    }


def _install(model, class_names: list[str], text, keys, label_ids, alpha: float, beta: float) -> None:
    """Set the classes, their text embeddings, the cache and its weights on the model (after every check)."""
    check_numbers({"alpha": alpha, "beta": beta})
    model.config.label_names = class_names
    model.config.id2label = dict(enumerate(class_names))
    model.config.label2id = {name: index for index, name in enumerate(class_names)}
    model.set_label_text_embeds(text)
    model.set_cache(keys, label_ids)
    model.config.cache_alpha, model.config.cache_beta = alpha, beta


@torch.no_grad()
def _validation_scores(model, validation: Dataset, class_names, text, batch_size: int, progress: bool):
    """`(logits without the cache, fused features, labels)` of the validation clouds, on the CPU."""
    features, fused, labels = _encode(model, validation, "validation", class_names, batch_size, progress)
    cache, model.cache = model.cache, None
    try:
        logits = model(view_features=features, text_embeds=text).logits
    finally:
        model.cache = cache
    return logits.cpu(), fused.cpu(), labels.cpu()


def _search(scored, keys: torch.Tensor, values: torch.Tensor, betas, alphas) -> CacheSearchResult:
    logits, fused, labels = scored
    affinity = fused.double() @ keys.detach().cpu().double().T
    return search_cache_weights(logits, affinity, values.cpu(), labels, betas=betas, alphas=alphas)


def _search_summary(found: CacheSearchResult) -> dict:
    return {
        "alpha": found.alpha,
        "beta": found.beta,
        "validation_accuracy": found.accuracy,
        "validation_accuracy_without_cache": found.baseline_accuracy,
        "num_candidates": found.num_candidates,
    }


def search_cache_on_validation(
    model,
    validation,
    validation_labels: Sequence[str] | None = None,
    *,
    betas: Sequence[float] | None = None,
    alphas: Sequence[float] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    r"""
    Search the `alpha` and `beta` of a model's existing cache on a validation split (never the test split) and store
    them in its config: after fine-tuning the keys (Tip-Adapter-F), as Tip-Adapter searches again after training.

    Args:
        model ([`PointCLIPModel`]):
            A model with a cache head (`config.use_cache_head`).
        validation (`datasets.Dataset`, `str`, `os.PathLike` or a list of file paths):
            The validation clouds, as in [`build_cache`].
        validation_labels (`Sequence[str]`, *optional*):
            One class name per validation file.
        betas (`Sequence[float]`, *optional*), alphas (`Sequence[float]`, *optional*):
            Search candidates (Tip-Adapter's grid by default).
        batch_size (`int`, *optional*, defaults to 32):
            Clouds rendered and encoded at a time.
        progress (`bool`, *optional*, defaults to `True`):
            Show progress bars.

    Returns:
        `dict`: the search result, also stored as `config.cache_info["search"]`.
    """
    if model.cache is None:
        raise ValueError("This model has no cache to tune: build one with model.build_cache(...).")
    class_names = list(model.config.label_names)
    validation = labelled_dataset(validation, validation_labels, class_names, "validation")
    model.eval()
    text = label_embeddings(model, processor_for_model(model), class_names)
    scored = _validation_scores(model, validation, class_names, text, batch_size, progress)
    found = _search(scored, model.cache.keys, model.cache.values, betas, alphas)
    model.config.cache_alpha, model.config.cache_beta = found.alpha, found.beta
    info = dict(model.config.cache_info or {})
    info["search"] = _search_summary(found)
    info["validation"] = {"source": "given", "size": len(validation)}
    model.config.cache_info = info
    return info["search"]


__all__ = ["build_cache", "labelled_dataset", "search_cache_on_validation"]
