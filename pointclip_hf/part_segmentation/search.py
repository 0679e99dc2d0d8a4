"""View-weight and per-part prompt searches for zero-shot part segmentation, on a validation split of one category.

Both maximise the mean shape IoU (`pointclip_hf.part_segmentation.iou.shape_iou`) of the category's shapes, as the
reference's `search_vweight` and `search_prompt` do, but on data the caller holds out rather than on the test split.
The classification searches (`search_view_weights`, `search_prompts`) cannot be reused as they are: their exact
pruning rests on top-1 accuracy, which decomposes per cloud, while IoU couples all points of a shape. The maths of the
scores is the same, though: a point's logits are linear in the view weights and in each part's text embedding, so the
patch features are encoded once ([`encode_part_views`]) and every candidate is scored from them.

- View weights: every combination of `grid` over the free views (the reference fixes views 0-3 at 0.75 and searches
  views 4-9 over {0.25, 0.5, 0.75, 1}); the first best in `itertools.product` order wins if it strictly beats the
  initial weights.
- Prompts: `passes` greedy passes over the parts; each part's candidates are scored at once and the first best is
  kept when it strictly improves the mean IoU.
"""

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from huggingface_hub.utils import tqdm

from ..model.modeling_pointclip_part_segmentation import part_scores_per_view, scramble_patch_tokens
from ..model.pipeline_pointclip_part_segmentation import PointCloudZeroShotPartSegmentationPipeline
from .iou import shape_iou

DEFAULT_GRID = (0.25, 0.5, 0.75, 1.0)
REFERENCE_FIXED_VIEWS = {0: 0.75, 1: 0.75, 2: 0.75, 3: 0.75}


@dataclass
class PartViewCache:
    r"""
    Encoded validation shapes of one category.

    Args:
        patch_features (`list[torch.Tensor]`):
            Per shape, `(views, grid * grid, C)` what the head scores: normalised patch embeddings, or the
            reference's scrambled tokens.
        pixels (`list[torch.Tensor]`):
            Per shape, `(views, points, 2)` pixels.
        visible (`list[torch.Tensor]`):
            Per shape, `(views, points)` visibility.
        labels (`list[np.ndarray]`):
            Per shape, `(points,)` true part indices in `[0, parts)`.
        image_size (`int`):
            The CLIP image size the pixels refer to.
        scale (`float`):
            The model's logit scale.
    """

    patch_features: list
    pixels: list
    visible: list
    labels: list
    image_size: int
    scale: float

    def view_scores(self, text_embeds: torch.Tensor) -> list[torch.Tensor]:
        """Per shape, `(views, points, parts)` scores for `text_embeds` `(parts, C)`."""
        return [
            part_scores_per_view(f[None], text_embeds, p[None], v[None], self.image_size, self.scale)[0]
            for f, p, v in zip(self.patch_features, self.pixels, self.visible)
        ]


def encode_part_views(model, clouds, labels, processor=None, transposed_lookup: bool = False,
                      scrambled_patch_tokens: bool = False, progress: bool = False) -> PartViewCache:  # fmt: skip
    r"""
    Render and encode validation shapes once for the searches.

    Args:
        model ([`PointCLIPForZeroShotPartSegmentation`]):
            The model.
        clouds (`list[np.ndarray]`):
            Shapes of one category, each `(points, 3)`.
        labels (`list[np.ndarray]`):
            Per shape, `(points,)` part indices in `[0, parts)` (local to the category).
        processor ([`PointCLIPProcessor`], *optional*):
            Defaults to the model's.
        transposed_lookup (`bool`, *optional*, defaults to `False`):
            The reference's transposed pixels.
        scrambled_patch_tokens (`bool`, *optional*, defaults to `False`):
            Cache the reference's scrambled patch tokens ([`scramble_patch_tokens`]) instead of the patches.
    """
    segmenter = PointCloudZeroShotPartSegmentationPipeline(model=model, processor=processor, device=model.device)
    cache = PartViewCache([], [], [], [], model.config.clip_config.vision_config.image_size,
                          float(model.clip.logit_scale.exp()))  # fmt: skip
    for cloud, label in tqdm(list(zip(clouds, labels)), disable=not progress, desc="encoding"):
        inputs = segmenter.preprocess(cloud, transposed_lookup=transposed_lookup)
        with torch.no_grad():
            patches = model.get_patch_features(inputs["pixel_values"])[0]
        cache.patch_features.append(scramble_patch_tokens(patches) if scrambled_patch_tokens else patches)
        cache.pixels.append(inputs["point_pixels"][0].to(model.device))
        cache.visible.append(inputs["point_visible"][0].to(model.device))
        cache.labels.append(np.asarray(label))
    return cache


def mean_shape_iou(predictions: list[np.ndarray], labels: list[np.ndarray], num_parts: int) -> float:
    """Mean over shapes of the shape IoU over parts `0 .. num_parts - 1`."""
    return float(np.mean([shape_iou(p, t, range(num_parts)) for p, t in zip(predictions, labels)]))


@dataclass
class PartSearchResult:
    r"""
    Args:
        view_weights (`list[float]`):
            The chosen weights (or the given ones, for a prompt search).
        text_embeds (`torch.Tensor` of shape `(parts, C)`):
            The chosen part embeddings.
        choices (`list[int]`):
            For a prompt search, the chosen candidate per part.
        miou (`float`):
            Mean shape IoU with the choice.
        baseline_miou (`float`):
            Mean shape IoU before the search.
    """

    view_weights: list
    text_embeds: torch.Tensor
    choices: list
    miou: float
    baseline_miou: float


def search_part_view_weights(cache: PartViewCache, text_embeds: torch.Tensor, grid=DEFAULT_GRID,
                             fixed: dict[int, float] | None = None, initial=None) -> PartSearchResult:  # fmt: skip
    r"""
    Exhaustive search of the view weights on encoded validation shapes.

    Args:
        cache ([`PartViewCache`]):
            From [`encode_part_views`].
        text_embeds (`torch.Tensor` of shape `(parts, C)`):
            The part embeddings.
        grid (`Sequence[float]`, *optional*, defaults to `(0.25, 0.5, 0.75, 1.0)`):
            Values tried per free view.
        fixed (`dict[int, float]`, *optional*):
            Views held at a weight; defaults to the reference's `{0: .75, 1: .75, 2: .75, 3: .75}`.
        initial (`Sequence[float]`, *optional*):
            The baseline weights (default all 1).
    """
    scores = cache.view_scores(text_embeds)
    num_views, num_parts = scores[0].shape[0], text_embeds.shape[0]
    fixed = REFERENCE_FIXED_VIEWS if fixed is None else fixed
    free = [view for view in range(num_views) if view not in fixed]
    candidates = [_weights(fixed, free, values, num_views) for values in itertools.product(grid, repeat=len(free))]
    baseline = torch.tensor(initial or [1.0] * num_views)
    all_weights = torch.stack([baseline, *candidates]).to(scores[0])
    mious = _weight_mious(scores, all_weights, cache.labels, num_parts)
    best = int(np.argmax(mious[1:])) + 1
    if mious[best] <= mious[0]:
        best = 0
    return PartSearchResult(all_weights[best].tolist(), text_embeds, [], float(mious[best]), float(mious[0]))


def _weights(fixed: dict, free: list[int], values, num_views: int) -> torch.Tensor:
    weights = torch.tensor([fixed.get(view, 0.0) for view in range(num_views)])
    weights[free] = torch.tensor(values, dtype=weights.dtype)
    return weights


def _weight_mious(scores, weights: torch.Tensor, labels, num_parts: int, chunk: int = 256) -> np.ndarray:
    """Mean shape IoU for every row of `weights` `(combinations, views)`."""
    totals = np.zeros(len(weights))
    for shape_scores, truth in zip(scores, labels):
        truth = torch.as_tensor(truth, device=shape_scores.device)
        for start in range(0, len(weights), chunk):
            predictions = torch.einsum("vnp,kv->knp", shape_scores, weights[start : start + chunk]).argmax(-1)
            totals[start : start + chunk] += _batched_shape_iou(predictions, truth, num_parts).cpu().numpy()
    return totals / len(scores)


def _batched_shape_iou(predictions: torch.Tensor, truth: torch.Tensor, num_parts: int) -> torch.Tensor:
    """`(K, points)` predictions against `(points,)` truth -> `(K,)` shape IoUs (empty union counts 1)."""
    parts = torch.arange(num_parts, device=predictions.device)[:, None]
    predicted, true = predictions[:, None, :] == parts, (truth[None] == parts)[None]
    intersection, union = (predicted & true).sum(-1), (predicted | true).sum(-1)
    return torch.where(union == 0, 1.0, intersection / union.clamp_min(1)).mean(-1)


def search_part_prompts(cache: PartViewCache, candidates: list[torch.Tensor], view_weights, initial=None,
                        passes: int = 2) -> PartSearchResult:  # fmt: skip
    r"""
    Greedy per-part prompt selection on encoded validation shapes.

    Args:
        cache ([`PartViewCache`]):
            From [`encode_part_views`].
        candidates (`list[torch.Tensor]`):
            Per part, `(sentences, C)` normalised candidate embeddings.
        view_weights (`Sequence[float]`):
            One weight per view.
        initial (`list[int]`, *optional*):
            The starting candidate per part (default 0).
        passes (`int`, *optional*, defaults to 2):
            Passes over the parts (the reference makes 2).
    """
    choices = list(initial or [0] * len(candidates))
    weights = torch.as_tensor(view_weights, dtype=candidates[0].dtype, device=candidates[0].device)
    point_logits = [(s * weights[:, None, None]).sum(0) for s in cache.view_scores(_chosen(candidates, choices))]
    baseline = best = _logit_miou(point_logits, cache.labels, len(candidates))
    for _ in range(passes):
        changed = False
        for part, part_candidates in enumerate(candidates):
            mious = _candidate_mious(cache, part_candidates, weights, point_logits, part, len(candidates))
            if mious.max() > best:
                choices[part], best, changed = int(np.argmax(mious)), float(mious.max()), True
                point_logits = [(s * weights[:, None, None]).sum(0)
                                for s in cache.view_scores(_chosen(candidates, choices))]  # fmt: skip
        if not changed:
            break
    return PartSearchResult(list(view_weights), _chosen(candidates, choices), choices, best, baseline)


def _chosen(candidates: list[torch.Tensor], choices: list[int]) -> torch.Tensor:
    return torch.stack([part[choice] for part, choice in zip(candidates, choices)])


def _logit_miou(point_logits, labels, num_parts: int) -> float:
    return mean_shape_iou([logits.argmax(-1).cpu().numpy() for logits in point_logits], labels, num_parts)


def _candidate_mious(cache, part_candidates, weights, point_logits, part: int, num_parts: int) -> np.ndarray:
    """Mean shape IoU with part `part`'s scores replaced by each candidate's: `(candidates,)`."""
    totals = np.zeros(len(part_candidates))
    for shape_logits, candidate_scores, truth in zip(point_logits, cache.view_scores(part_candidates), cache.labels):
        replaced = shape_logits[None].repeat(len(part_candidates), 1, 1)
        replaced[:, :, part] = (candidate_scores * weights[:, None, None]).sum(0).T
        truth = torch.as_tensor(truth, device=replaced.device)
        totals += _batched_shape_iou(replaced.argmax(-1), truth, num_parts).cpu().numpy()
    return totals / len(point_logits)
