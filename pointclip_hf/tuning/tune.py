"""`tune_on_validation`: the prompt and view-weight searches applied to a model and stored in its config."""

from collections.abc import Mapping, Sequence

import torch

from ..encoding import class_names_for, encode_dataset
from ..model.pipeline_pointclip import label_embeddings
from ..model.processing_pointclip import processor_for_model
from .prompt_search import encode_class_prompts, search_prompts
from .view_weight_search import search_view_weights


def tune_on_validation(
    model,
    validation_dataset,
    *,
    prompt_library: Mapping[str, Sequence[str]] | None = None,
    search_weights: bool = True,
    grid=(0.25, 0.5, 0.75, 1.0),
    fixed: dict[int, float] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """
    Tune a model's prompts and view weights on a validation split (never the test split) and store them in its
    config, so they persist through `save_pretrained` / `push_to_hub`. One CLIP pass encodes the clouds; then the
    greedy prompt search over `prompt_library` (if given) picks one sentence per class (`config.class_prompts`), and
    the exhaustive grid search picks the view weights (`config.view_weights`).

    Args:
        model ([`PointCLIPModel`]):
            The model to tune, in place.
        validation_dataset (`datasets.Dataset`):
            Columns `points` and integer `label`.
        prompt_library (`Mapping[str, Sequence[str]]`, *optional*):
            `{class: [sentence, ...]}` candidates of the prompt search; no prompt search without it.
        search_weights (`bool`, *optional*, defaults to `True`):
            Run the view-weight search.
        grid (`Sequence[float]`, *optional*, defaults to `(0.25, 0.5, 0.75, 1.0)`):
            Candidate weights of `search_view_weights`.
        fixed (`dict[int, float]`, *optional*):
            Views whose weight is not searched.
        batch_size (`int`, *optional*, defaults to 32):
            Clouds encoded at a time.
        progress (`bool`, *optional*, defaults to `True`):
            Show progress.

    Returns:
        `dict`: a JSON-able summary of both searches (`validation_size`, `class_names`, and `prompts` and
        `view_weights` with their validation accuracy before and after).
    """
    class_names = class_names_for(model, validation_dataset)
    features, labels = encode_dataset(model, validation_dataset, batch_size=batch_size, progress=progress)
    with torch.no_grad():
        embeds = model.get_point_cloud_embeds(features, apply_view_weights=False).float().cpu()
    labels = labels.cpu()
    summary = {"validation_size": len(labels), "class_names": class_names}
    if prompt_library is not None:
        candidates = encode_class_prompts(model, prompt_library, class_names)
        found = search_prompts(
            embeds,
            candidates,
            class_names,
            labels,
            view_weights=model.config.view_weights,
            progress=progress,
            sentences={c: list(prompt_library[c]) for c in class_names},
        )
        model.config.class_prompts = {name: [sentence] for name, sentence in found.prompts.items()}
        summary["prompts"] = {
            "accuracy": found.accuracy,
            "baseline_accuracy": found.baseline_accuracy,
            "chosen": found.prompts,
        }
    if search_weights:
        text = label_embeddings(model, processor_for_model(model), class_names).float().cpu()
        found = search_view_weights(embeds, text, labels, grid=grid, fixed=fixed, progress=progress)
        model.set_view_weights(found.weights)
        summary["view_weights"] = {
            "accuracy": found.accuracy,
            "baseline_accuracy": found.baseline_accuracy,
            "weights": found.weights,
            "num_candidates": found.num_candidates,
        }
    return summary


__all__ = ["tune_on_validation"]
