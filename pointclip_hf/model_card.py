"""Model cards for PointCLIP models: Hub metadata (base model, tags, model-index) and a README body rendered from the
Jinja template `pointclip_hf/model_card_template.md` (shipped inside the package).

`build_model_card(model, training=..., evaluation=..., dataset_name=..., shots=..., repo_id=...)` returns a
`huggingface_hub.ModelCard`; `model.push_to_hub(repo_id, ...)` uses it. The repository's example card
(`model_cards/pointclip_adapter.md`) is written by `examples/write_example_model_card.py`.
"""

import os
from importlib import resources
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .argument_checks import check_counts, check_numbers
from .model.choices import PART_SEGMENTATION_STYLE
from .model.configuration_pointclip import PointCLIPConfig
from .model.inter_view_adapter import InterViewAdapter

TEMPLATE_NAME = "model_card_template.md"
LIBRARY_NAME = "pointclip_hf"
TAGS = ["point-cloud", "pointclip", "clip", "few-shot", "zero-shot-classification", "3d"]
PIPELINE_TAG = "other"  # the Hub has no point-cloud task; "zero-shot-classification" would show a text widget
TASK_NAME = "Zero-shot point cloud classification"
PART_SEGMENTATION_TAG = "part-segmentation"
# arXiv ids: the Hub links the paper pages
PAPERS = {"pointclip": "2112.02413", "pointclip_v2": "2211.11682", "tip_adapter": "2111.03930"}
KNOWN_DATASETS = {"modelnet40": "jxie/modelnet40", "scanobjectnn": "jxie/scanobjectnn"}
BASE_MODEL_LICENSES = {
    "openai/clip-vit-base-patch32": "mit",
    "openai/clip-vit-base-patch16": "mit",
    "openai/clip-vit-large-patch14": "mit",
    "openai/clip-vit-large-patch14-336": "mit",
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K": "mit",
}
PROJECTION_DESCRIPTIONS = {
    "pointclip_v1": "PointCLIP zero-shot: 4 side views, top and bottom; perspective splat of harmonic-mean depth, "
    "128 x 128",
    "pointclip_v1_fewshot": "PointCLIP few-shot: 4 side views, 4 corner views, top and bottom; perspective splat of "
    "harmonic-mean depth, 224 x 224",
    "pointclip_v2": "PointCLIP V2 realistic projection: 10 tilted views, voxelised, densified and smoothed grey maps "
    "on white, 110 x 110",
    PART_SEGMENTATION_STYLE: "PointCLIP V2 part-segmentation projection: 10 views of a denser voxel grid, max-pooled "
    "and smoothed, cropped and resized to 224 x 224",
}
# TrainingConfig settings that do not change the trained weights: left out of the recipe table.
_RUNTIME_SETTINGS = ("progress", "device", "num_workers", "cache_features")


def model_card_template_path() -> Path:
    """Path of the Jinja template the cards are rendered from."""
    return Path(str(resources.files(__package__) / TEMPLATE_NAME))


def build_model_card(
    model,
    training: dict | None = None,
    evaluation: dict | None = None,
    dataset_name: str | None = None,
    shots: int | None = None,
    *,
    repo_id: str | None = None,
    model_name: str | None = None,
    template_path: str | os.PathLike | None = None,
) -> ModelCard:
    """
    The model card of a PointCLIP model.

    Args:
        model: a [`PointCLIPModel`] (or just its [`PointCLIPConfig`]).
        training: the recipe: `TrainingConfig.to_dict()`, or the `training_result.json` written by `train_adapter`
            (its `training_config`, `best_epoch` and `best_validation_accuracy` are used).
        evaluation: results on held-out data: a dict with `accuracy` (a fraction), and optionally `mean_class_accuracy`,
            `num_samples`, `per_class_accuracy` (`{label: fraction}`), `split` (default `"test"`) and `dataset_name`;
            `EvaluationReport.to_dict()` fits. With an accuracy the card gets a `model-index` entry.
        dataset_name: the dataset (a Hub id or a short name such as `"modelnet40"`), listed under `datasets`.
        shots: the k of a k-shot training set.
        repo_id: where the model lives; used in the usage snippet (default: a placeholder).
        model_name: the title and the `model-index` name (default: the last part of `repo_id`).
        template_path: another Jinja template (default: the one shipped with the package).
    """
    config = model if isinstance(model, PointCLIPConfig) else model.config
    check_counts({"shots": shots}, optional=("shots",))
    evaluation = _evaluation_dict(evaluation)
    dataset_name = dataset_name or (evaluation or {}).get("dataset_name")
    dataset_name = KNOWN_DATASETS.get(str(dataset_name).lower(), dataset_name) if dataset_name else None
    repo_id = repo_id or "your-username/pointclip-model"
    model_name = model_name or repo_id.rstrip("/").split("/")[-1]
    card_data = _card_metadata(config, evaluation, dataset_name, model_name)
    variables = dict(
        model_name=model_name,
        repo_id=repo_id,
        shots=shots,
        dataset_name=dataset_name,
        processor_text=_processor_text(model),
        **_model_variables(config),
        **_training_variables(training),
        **_evaluation_variables(evaluation, dataset_name),
    )
    path = template_path if template_path is not None else model_card_template_path()
    return ModelCard.from_template(card_data, template_path=str(path), **variables)


def _card_metadata(config: PointCLIPConfig, evaluation: dict | None, dataset_name, model_name: str) -> ModelCardData:
    """The card's YAML: base model and its license, library, tags with the papers, datasets, task, model-index."""
    few_shot = bool(config.use_adapter or config.use_cache_head)
    base_model = config.clip_model_name_or_path
    eval_results = _eval_results(evaluation, dataset_name)
    part_segmentation = config.projection_style == PART_SEGMENTATION_STYLE
    tags = list(TAGS) if few_shot else [tag for tag in TAGS if tag != "few-shot"]
    if part_segmentation:
        tags = [PART_SEGMENTATION_TAG if tag == "zero-shot-classification" else tag for tag in tags]
    tags += [f"arxiv:{PAPERS['pointclip']}"]
    if config.projection_style in ("pointclip_v2", PART_SEGMENTATION_STYLE):
        tags.append(f"arxiv:{PAPERS['pointclip_v2']}")
    if config.use_cache_head:
        tags += ["tip-adapter", f"arxiv:{PAPERS['tip_adapter']}"]
    return ModelCardData(
        base_model=base_model,
        library_name=LIBRARY_NAME,
        license=BASE_MODEL_LICENSES.get(base_model),
        tags=tags,
        datasets=[dataset_name] if dataset_name else None,
        pipeline_tag=PIPELINE_TAG,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
        **({"base_model_relation": "adapter"} if few_shot else {}),
    )


def _model_variables(config: PointCLIPConfig) -> dict:
    """What the card says about the model: base CLIP, projection, views, prompts, adapter, labels."""
    base_model = config.clip_model_name_or_path
    use_adapter = bool(config.use_adapter)
    label_names = list(config.label_names) if config.label_names else None
    return dict(
        base_model=base_model or "(CLIP weights stored in this repository)",
        base_model_url=f"https://huggingface.co/{base_model}" if base_model and not os.path.exists(base_model) else "#",
        use_adapter=use_adapter,
        part_segmentation=config.projection_style == PART_SEGMENTATION_STYLE,
        num_views=config.num_views,
        projection_style=config.projection_style,
        projection_description=PROJECTION_DESCRIPTIONS.get(config.projection_style, config.projection_style),
        view_weights_text=_view_weights_text(config.view_weights),
        prompt_templates_text=", ".join(f"`{template}`" for template in config.prompt_templates or []),
        class_prompts_count=len(config.class_prompts or {}),
        adapter_parameters=f"{_adapter_parameters(config):,}" if use_adapter else None,
        adapter_ratio=config.adapter_ratio,
        adapter_dropout=config.adapter_dropout,
        label_names=label_names,
        num_labels=len(label_names) if label_names else None,
        labels_python=repr(label_names) if label_names else '["chair", "table", "airplane"]  # any class names',
        use_cache_head=bool(config.use_cache_head),
        cache_size=config.cache_size,
        cache_alpha=f"{config.cache_alpha:g}",
        cache_beta=f"{config.cache_beta:g}",
        cache_rows=_cache_rows(config.cache_info or {}),
    )


def _training_variables(training) -> dict:
    """What the card says about training: the recipe, the seed, the model selection."""
    recipe, best_epoch, best_validation_accuracy = _split_training(training)
    return dict(
        seed=recipe.get("seed") if recipe else None,
        selection_text=_selection_text(training, best_validation_accuracy),
        training_rows=[(key, _format_value(value)) for key, value in (recipe or {}).items()],
        best_epoch=best_epoch,
        best_validation_accuracy=_percent(best_validation_accuracy),
    )


def _evaluation_variables(evaluation: dict | None, dataset_name) -> dict:
    """What the card says about held-out results."""
    per_class = (evaluation or {}).get("per_class_accuracy") or {}
    return dict(
        evaluation_rows=_evaluation_rows(evaluation, dataset_name),
        num_samples=(evaluation or {}).get("num_samples"),
        per_class_rows=[(label, _percent(value)) for label, value in per_class.items()],
    )


# ---------------------------------------------------------------------------------------------------- helpers


def _as_dict(value, name: str) -> dict:
    """`value`, a dict or an object with `to_dict()` (a `TrainingResult`, an `EvaluationReport`), as a dict."""
    if isinstance(value, dict):
        return value
    if not callable(getattr(value, "to_dict", None)):
        raise TypeError(f"{name} must be a dict or have a to_dict() method, got {type(value).__name__}.")
    return value.to_dict()


def _split_training(training: dict | None) -> tuple[dict | None, int | None, float | None]:
    if training is None:
        return None, None, None
    training = _as_dict(training, "training")
    best_epoch = training.get("best_epoch")
    best_accuracy = training.get("best_validation_accuracy")
    recipe = training.get("training_config", training)
    recipe = {key: value for key, value in recipe.items() if key not in _RUNTIME_SETTINGS}
    for key in (
        "best_epoch",
        "best_validation_accuracy",
        "history",
        "output_dir",
        "epochs_completed",
        "finished",
        "label_names",
    ):
        recipe.pop(key, None)
    return recipe, best_epoch, best_accuracy


def _evaluation_dict(evaluation) -> dict | None:
    if evaluation is None:
        return None
    evaluation = _as_dict(evaluation, "evaluation")
    fractions = {
        f"evaluation[{key!r}], a fraction,": evaluation.get(key) for key in ("accuracy", "mean_class_accuracy")
    }
    check_numbers({name: value for name, value in fractions.items() if value is not None}, high=1)
    return evaluation


def _metrics(evaluation: dict | None) -> list[tuple[str, str, float]]:
    """(metric name, metric config, value) of the accuracies present."""
    if not evaluation:
        return []
    metrics = []
    if evaluation.get("accuracy") is not None:
        metrics.append(("Overall accuracy", "overall", float(evaluation["accuracy"])))
    if evaluation.get("mean_class_accuracy") is not None:
        metrics.append(("Mean class accuracy", "mean_class", float(evaluation["mean_class_accuracy"])))
    return metrics


def _eval_results(evaluation: dict | None, dataset_name: str | None) -> list[EvalResult]:
    if not evaluation or evaluation.get("accuracy") is None:
        return []
    dataset = dataset_name or "custom"
    return [
        EvalResult(
            task_type=PIPELINE_TAG,
            task_name=TASK_NAME,
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=evaluation.get("split", "test"),
            metric_type="accuracy",
            metric_name=name,
            metric_config=metric_config,
            metric_value=value,
        )
        for name, metric_config, value in _metrics(evaluation)
    ]


def _evaluation_rows(evaluation: dict | None, dataset_name: str | None) -> list[dict]:
    return [
        {
            "dataset": dataset_name or "custom",
            "split": (evaluation or {}).get("split", "test"),
            "metric": name,
            "value": _percent(value),
        }
        for name, _, value in _metrics(evaluation)
    ]


def _selection_text(training, best_validation_accuracy) -> str | None:
    if best_validation_accuracy is not None:
        return (
            "the adapter of the epoch with the best validation accuracy (the original PointCLIP code selects on the "
            "test set, which makes its reported numbers optimistic)."
        )
    if isinstance(training, dict) and "best_epoch" in training:
        return "the adapter of the last epoch (no validation set)."
    return None


def _cache_rows(info: dict) -> list[tuple[str, str]]:
    """How a cache was built, as (what, how) lines from `config.cache_info`."""
    rows = []
    if info.get("shots"):
        rows.append(("Support", info.get("support") or f"{info['shots']} clouds per class"))
    if info.get("seed") is not None:
        rows.append(("Seed", f"{info['seed']} (the draw of the support clouds)"))
    validation = info.get("validation")
    if validation:
        rows.append(("Validation split", f"{validation['source']}, {validation['size']} clouds (never the test split)"))
    search = info.get("search")
    if search:
        rows.append(("alpha and beta", (
            f"searched on the validation split over Tip-Adapter's grid ({search['num_candidates']} pairs): "
            f"validation accuracy {_percent(search['validation_accuracy'])} with the cache, "
            f"{_percent(search['validation_accuracy_without_cache'])} without")))  # fmt: skip
    else:
        rows.append(("alpha and beta", "set by hand, not searched"))
    tuning = info.get("fine_tuning")
    if tuning:
        rows.append(("Fine-tuning (Tip-Adapter-F)", f"keys trained {tuning['epochs']} epochs (SGD, learning rate "
                     f"{tuning['learning_rate']:g}), values fixed; selected epoch {tuning['best_epoch']}"))  # fmt: skip
    else:
        rows.append(("Fine-tuning", "none: the keys are the support features (training-free Tip-Adapter)"))
    return rows


def _adapter_parameters(config: PointCLIPConfig) -> int:
    with torch.device("meta"):
        adapter = InterViewAdapter(config.num_views, config.embed_dim)
    return sum(parameter.numel() for parameter in adapter.parameters())


def _processor_text(model) -> str | None:
    processor = getattr(model, "_processor", None)  # only one already attached: never download for a card
    feature_extractor = getattr(processor, "feature_extractor", None)
    if feature_extractor is None:
        return None
    return (
        f"{feature_extractor.num_points} points ({feature_extractor.sampling} sampling), "
        f"{'unit-sphere normalisation, ' if feature_extractor.normalize else ''}"
        f"{feature_extractor.image_size} x {feature_extractor.image_size} images"
    )


def _view_weights_text(weights) -> str:
    if weights is None:
        return "all 1"
    return ", ".join(f"{weight:g}" for weight in weights)


def _percent(value) -> str | None:
    return None if value is None else f"{100 * value:.2f} %"


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(item) for item in value)
    return f"{value}"


__all__ = ["build_model_card", "model_card_template_path"]
