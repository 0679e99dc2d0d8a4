"""From a labelled point-cloud dataset to CLIP view features: the one loop that renders and encodes clouds.

Few-shot training (its feature cache), the view-weight and prompt searches and the ensembles all encode a dataset
here, once, and then try prompts, view weights or adapters on the cached features at no further CLIP cost.
"""

from dataclasses import dataclass

import numpy as np
import torch
from huggingface_hub.utils import tqdm

from .argument_checks import check_counts
from .data import check_point_cloud_dataset
from .model.processing_pointclip import processor_for_model
from .model.prompts import check_labels, class_ids_to_label_ids


@dataclass
class PreparedSplit:
    """
    The clouds and labels of one labelled dataset, held in memory as tensors.

    Args:
        name (`str`):
            The split's name in messages and progress bars (`"train"`, `"validation"`, ...).
        points (`torch.Tensor` of shape `(num_clouds, num_points, 3)`):
            The clouds, checked, normalised and sampled by the feature extractor's `prepare_points`.
        labels (`torch.Tensor` of shape `(num_clouds,)`):
            The `int64` class ids.
        features (`torch.Tensor` of shape `(num_clouds, views, C)`, *optional*):
            The cached CLIP view features, once computed by `encode_split`.
    """

    name: str
    points: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor | None = None


def class_names_for(model, dataset) -> list[str]:
    """
    The classes a model scores a labelled dataset against.

    Args:
        model ([`PointCLIPModel`]):
            Its `config.label_names` win when set.
        dataset (`datasets.Dataset`):
            Its `ClassLabel` names are used otherwise.

    Returns:
        `list[str]`: the class names, in logit order.
    """
    names = model.config.label_names or getattr(getattr(dataset, "features", {}).get("label"), "names", None)
    if not names:
        raise ValueError("The model has no config.label_names and the dataset's 'label' column is not a ClassLabel.")
    return check_labels(list(names))


def check_labelled_dataset(dataset, name: str, label_names: list[str]) -> np.ndarray:
    """
    Check a dataset's `points` and `label` columns against the classes. A `ClassLabel` with the same names in another
    order is remapped to `label_names`' order; other names are refused.

    Args:
        dataset (`datasets.Dataset`):
            Columns `points` and `label`.
        name (`str`):
            The split's name in messages.
        label_names (`list[str]`):
            The classes; every label id must lie in `[0, len(label_names))`.

    Returns:
        `np.ndarray` of shape `(num_clouds,)`: the integer label ids, in `label_names`' order.
    """
    check_point_cloud_dataset(dataset, f"{name} dataset")
    labels = np.asarray(dataset["label"])
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"The {name} dataset's 'label' column must hold integer class ids, got dtype {labels.dtype}.")
    bad = labels[(labels < 0) | (labels >= len(label_names))]
    if bad.size:
        raise ValueError(
            f"The {name} dataset has label ids {sorted(set(bad.tolist()))[:10]} outside [0, {len(label_names)}): the "
            f"model knows {len(label_names)} classes ({label_names})."
        )
    names = getattr(getattr(dataset, "features", {}).get("label"), "names", None)
    if names is not None and list(names) != list(label_names):
        labels = np.asarray(class_ids_to_label_ids(list(names), list(label_names)))[labels]
    return labels


def prepare_split(
    dataset, name: str, label_names, feature_extractor, device, chunk: int, progress: bool
) -> PreparedSplit:
    """
    Check a labelled dataset and prepare all its clouds, `chunk` rows at a time.

    Args:
        dataset (`datasets.Dataset`):
            Columns `points` (`(num_points_i, 3)` each) and integer `label`.
        name (`str`):
            The split's name in messages and progress bars.
        label_names (`list[str]`):
            The classes the labels index.
        feature_extractor ([`PointCLIPFeatureExtractor`]):
            Prepares (normalises and samples) the clouds.
        device (`torch.device`):
            Where the prepared clouds and labels are put.
        chunk (`int`):
            Rows read and prepared at a time.
        progress (`bool`):
            Show a tqdm progress bar.

    Returns:
        [`PreparedSplit`] without features.
    """
    labels = check_labelled_dataset(dataset, name, label_names)
    rows = dataset.select_columns(["points"]).with_format("torch")
    prepared = []
    for start in tqdm(range(0, len(rows), chunk), desc=f"Reading {name}", disable=not progress, leave=False):
        names = [f"Row {index} of the {name} split" for index in range(start, min(start + chunk, len(rows)))]
        prepared.append(feature_extractor.prepare_points(rows[start : start + chunk]["points"], names=names))
    points = torch.cat(prepared).to(device)
    return PreparedSplit(name, points, torch.as_tensor(labels, dtype=torch.long, device=device))


def view_features(model, feature_extractor, points: torch.Tensor) -> torch.Tensor:
    """
    Render and encode prepared clouds.

    Args:
        model ([`PointCLIPModel`]):
            Encodes the rendered views with its CLIP image tower.
        feature_extractor ([`PointCLIPFeatureExtractor`]):
            Renders the views.
        points (`torch.Tensor` of shape `(batch, num_points, 3)`):
            Prepared clouds.

    Returns:
        `torch.Tensor` of shape `(batch, views, C)`: the view features, a normal (not inference-mode) tensor that
        training graphs can use.
    """
    with torch.inference_mode():
        features = model.get_view_features(feature_extractor.render(points))
    return features.clone()


def encode_split(model, feature_extractor, split: PreparedSplit, chunk: int, progress: bool) -> torch.Tensor:
    """
    The view features of every cloud of `split`, `chunk` clouds at a time.

    Args:
        model ([`PointCLIPModel`]):
            The encoding model.
        feature_extractor ([`PointCLIPFeatureExtractor`]):
            Renders the views.
        split ([`PreparedSplit`]):
            The prepared clouds.
        chunk (`int`):
            Clouds rendered and encoded at a time.
        progress (`bool`):
            Show a tqdm progress bar.

    Returns:
        `torch.Tensor` of shape `(num_clouds, views, C)`.
    """
    features = []
    starts = range(0, len(split.points), chunk)
    for start in tqdm(starts, desc=f"Encoding {split.name}", disable=not progress, leave=False):
        features.append(view_features(model, feature_extractor, split.points[start : start + chunk]))
    return torch.cat(features)


def encode_dataset(model, dataset, batch_size: int = 32, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """
    One CLIP pass over a labelled dataset. The cache behind fast adapter training, the view-weight and prompt
    searches and the ensembles: prompts, view weights and the adapter can then be tried at no CLIP cost.

    Args:
        model ([`PointCLIPModel`]):
            Renders with `processor_for_model(model)` and encodes with its CLIP; its classes are `class_names_for(model,
            dataset)`.
        dataset (`datasets.Dataset`):
            Columns `points` and integer `label`.
        batch_size (`int`, *optional*, defaults to 32):
            Clouds prepared, rendered and encoded at a time.
        progress (`bool`, *optional*, defaults to `True`):
            Show tqdm progress bars.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: the view features of shape `(num_clouds, views, C)` (before
        normalisation, as `model.get_view_features` returns them) and the labels of shape `(num_clouds,)`, on the
        model's device.
    """
    check_counts({"batch_size": batch_size})
    extractor = processor_for_model(model).feature_extractor
    class_names = class_names_for(model, dataset)
    split = prepare_split(dataset, "dataset", class_names, extractor, model.device, batch_size, progress)
    return encode_split(model, extractor, split, batch_size, progress), split.labels


__all__ = ["class_names_for", "encode_dataset"]
