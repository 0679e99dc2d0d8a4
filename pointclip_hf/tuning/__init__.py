"""Tuning on a *validation* split: view-weight and prompt searches, and ensembles with other 3D networks.

The reference implementations (PointCLIP ``search_weights_zs`` / ``search_weights_fs`` and PointCLIP V2
``zeroshot_cls/trainers/post_search.py``) tune the view weights and the prompts on the **test** labels.
This package does the same searches from features cached in one CLIP pass (`pointclip_hf.encoding`), but it is
meant to be run on a validation split only; the result is then frozen and applied to the test split.

- `view_weight_search`: `search_view_weights` (exhaustive and exact) and `view_logits`;
- `prompt_search`: `search_prompts` (greedy, per class) and `encode_class_prompts`;
- `tune`: `tune_on_validation`, both searches applied to a model and stored in its config;
- `ensemble`: the PointCLIP + 3D-network ensemble and the search of its weight;
- `cache_search`: `search_cache_weights`, the alpha and beta of a cache head (Tip-Adapter's `search_hp`).

Scoring model
-------------
PointCLIP scores cloud ``n`` against class ``k`` as::

    logits[n, k] = scale / sqrt(V) * sum_v w_v * <f[n, v], t[k]>

``f`` ``[N, V, C]`` holds the per-view L2-normalised image features (V1 zero-shot, V2), or the V1 few-shot adapter
output normalised over all ``V*C`` (the same formula, with ``f`` being the ``V`` blocks of that vector). ``t``
``[K, C]`` holds the L2-normalised class text embeddings and ``w`` ``[V]`` the non-negative view weights.
``scale / sqrt(V)`` is a positive constant, so it never changes the argmax, and the searches ignore it. The features
are used **as given**: they are not renormalised per view, because that would be wrong for the few-shot adapter
features. The text embeddings are L2-normalised here. For embeddings that are already normalised this only changes
them by rounding, and for V1's "repeated, then normalised over V*C" text it is a rescaling, which does not change
the argmax.

Prediction and ties
-------------------
The prediction is ``argmax_k logits[n, k]``. When classes tie exactly, the lowest class index wins, as with
``torch.argmax``. So class ``y`` is predicted iff ``s_y > s_k`` for every ``k < y`` and ``s_y >= s_k`` for every
``k > y``.
"""

from .cache_search import CacheSearchResult, search_cache_weights
from .ensemble import (
    EnsembleResult,
    check_class_order,
    ensemble_logits,
    load_logits,
    pointclip_logits,
    search_ensemble_weight,
)
from .prompt_search import PromptSearchResult, encode_class_prompts, search_prompts
from .tune import tune_on_validation
from .view_weight_search import ViewWeightSearchResult, search_view_weights, view_logits

__all__ = [
    "CacheSearchResult",
    "EnsembleResult",
    "PromptSearchResult",
    "ViewWeightSearchResult",
    "check_class_order",
    "encode_class_prompts",
    "ensemble_logits",
    "load_logits",
    "pointclip_logits",
    "search_cache_weights",
    "search_ensemble_weight",
    "search_prompts",
    "search_view_weights",
    "tune_on_validation",
    "view_logits",
]
