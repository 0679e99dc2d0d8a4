"""Post-search of view weights and prompts on a *validation* split.

The reference implementations (PointCLIP ``search_weights_zs`` / ``search_weights_fs`` and PointCLIP V2
``post_search.py``, spec sections 2.7, 3.4 and 4.7) tune the view weights and the prompts on the **test**
labels. This module does the same searches from features cached in one CLIP pass, but it is meant to be
run on a validation split only; the result is then frozen and applied to the test split.

Scoring model
-------------
PointCLIP scores cloud ``n`` against class ``k`` as::

    logits[n, k] = scale / sqrt(V) * sum_v w_v * <f[n, v], t[k]>

``f`` ``[N, V, C]`` holds the per-view L2-normalised image features (V1 zero-shot, V2), or the V1 few-shot
adapter output normalised over all ``V*C`` (the same formula, with ``f`` being the ``V`` blocks of that
vector). ``t`` ``[K, C]`` holds the L2-normalised class text embeddings and ``w`` ``[V]`` the
non-negative view weights. ``scale / sqrt(V)`` is a positive constant, so it never changes the argmax,
and the searches ignore it. The features are used **as given**: they are not renormalised per view,
because that would be wrong for the few-shot adapter features. The text embeddings are L2-normalised
here. For embeddings that are already normalised this only changes them by rounding, and for V1's
"repeated, then normalised over V*C" text it is a rescaling, which does not change the argmax.

Prediction and ties
-------------------
The prediction is ``argmax_k logits[n, k]``. When classes tie exactly, the lowest class index wins,
as with ``torch.argmax``. So class ``y`` is predicted iff ``s_y > s_k`` for every ``k < y`` and
``s_y >= s_k`` for every ``k > y``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "tune_on_validation",
    "view_logits",
    "ViewWeightSearchResult",
    "search_view_weights",
    "PromptSearchResult",
    "search_prompts",
]

# Relative safety margin used by the exact pruning rules in ``search_view_weights`` (see there).
_PRUNE_RTOL = 1e-6
# Upper bound for the precomputed float32 margin table of the trailing view group (bytes).
_TABLE_BYTES = 512 << 20


# --------------------------------------------------------------------------------------------------
# shared validation helpers
# --------------------------------------------------------------------------------------------------
def _as_tensor(x, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach().cpu()
    try:
        return torch.as_tensor(x).cpu()
    except Exception as exc:  # pragma: no cover - defensive
        raise TypeError(f"{name} must be a tensor or array-like, got {type(x).__name__}") from exc


def _check_features(features) -> Tensor:
    features = _as_tensor(features, "features")
    if features.ndim != 3:
        raise ValueError(f"features must have shape [N, V, C], got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"features must be floating point, got {features.dtype}")
    n, v, c = features.shape
    if n == 0:
        raise ValueError("empty validation split: features has N = 0 clouds")
    if v == 0 or c == 0:
        raise ValueError(f"features must have V >= 1 views and C >= 1 channels, got {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise ValueError("features contain NaN or Inf")
    return features


def _normalize_text(text: Tensor, name: str) -> Tensor:
    text = text.to(torch.float64)
    norms = text.norm(dim=-1, keepdim=True)
    if not torch.isfinite(text).all():
        raise ValueError(f"{name} contain NaN or Inf")
    if (norms == 0).any():
        bad = int((norms.flatten() == 0).nonzero()[0])
        raise ValueError(f"{name} row {bad} has zero norm and cannot be L2-normalised")
    return text / norms


def check_label_ids(labels, n: int, k: int) -> Tensor:
    """`labels` as an `[N]` int64 tensor of class ids in `[0, k)`, or a `ValueError` naming what is wrong."""
    labels = _as_tensor(labels, "labels")
    if labels.ndim == 2 and labels.shape[1] == 1:  # reference loaders keep labels as [N, 1]
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape [N], got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.shape[0] == 0:
        raise ValueError("empty validation split: labels has N = 0 entries")
    if labels.shape[0] != n:
        raise ValueError(
            f"number of clouds mismatch: the scores have N = {n} rows but labels has N = {labels.shape[0]}"
        )
    labels = labels.long()
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= k:
        raise ValueError(f"labels out of range: found values in [{lo}, {hi}] but there are K = {k} classes")
    return labels


def _check_view_weights(weights, v: int, name: str = "view_weights") -> Tensor:
    weights = _as_tensor(weights, name).to(torch.float64).flatten()
    if weights.numel() != v:
        raise ValueError(f"{name} must have V = {v} entries, got {weights.numel()}")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"{name} must be finite and non-negative, got {weights.tolist()}")
    return weights


def _view_logits64(features: Tensor, text: Tensor) -> Tensor:
    """[N, V, K] float64 per-view logits (text normalised, features as given)."""
    return torch.einsum("nvc,kc->nvk", features.to(torch.float64), text)


def _accuracy_from_logits(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(dim=-1) == labels).to(torch.float64).mean())


# --------------------------------------------------------------------------------------------------
# per-view logits
# --------------------------------------------------------------------------------------------------
def view_logits(features: Tensor, text_embeds: Tensor) -> Tensor:
    """Unscaled per-view logits ``L[n, v, k] = <f[n, v], t[k] / |t[k]|>``.

    ``features`` ``[N, V, C]`` are used as given (normally they are already L2-normalised per view), and
    ``text_embeds`` ``[K, C]`` are L2-normalised here. With per-view-normalised features this is the
    per-view cosine similarity. ``logits = scale / sqrt(V) * (L * w[None, :, None]).sum(1)`` then gives
    the PointCLIP logits for view weights ``w``.

    The result has shape ``[N, V, K]``. It is computed in float64 and returned in the features' dtype,
    or in float32 when the features are float16 or bfloat16.
    """
    features = _check_features(features)
    text_embeds = _as_tensor(text_embeds, "text_embeds")
    if text_embeds.ndim != 2:
        raise ValueError(f"text_embeds must have shape [K, C], got {tuple(text_embeds.shape)}")
    if text_embeds.shape[0] == 0:
        raise ValueError("text_embeds must contain at least one class (K = 0)")
    if text_embeds.shape[1] != features.shape[2]:
        raise ValueError(
            f"channel mismatch: features have C = {features.shape[2]} but text_embeds have "
            f"C = {text_embeds.shape[1]}"
        )
    out = _view_logits64(features, _normalize_text(text_embeds, "text_embeds"))
    dtype = features.dtype if features.dtype in (torch.float32, torch.float64) else torch.float32
    return out.to(dtype)


# --------------------------------------------------------------------------------------------------
# view-weight search
# --------------------------------------------------------------------------------------------------
@dataclass
class ViewWeightSearchResult:
    """Result of :func:`search_view_weights`.

    Attributes:
        weights: the best weight per view (length V), including the ``fixed`` ones.
        accuracy: top-1 accuracy of ``weights`` on the given labels (fraction in [0, 1]).
        baseline_accuracy: top-1 accuracy with equal (all-one) weights, i.e. the unweighted features.
            This matches the reference's "before search" figure.
        num_candidates: number of weight combinations evaluated, ``len(grid) ** (V - len(fixed))``.
    """

    weights: list[float]
    accuracy: float
    baseline_accuracy: float
    num_candidates: int


def _check_grid(grid) -> Tensor:
    g = _as_tensor(list(grid) if not isinstance(grid, Tensor) else grid, "grid").to(torch.float64).flatten()
    if g.numel() == 0:
        raise ValueError("grid must contain at least one weight value (got an empty grid)")
    if not torch.isfinite(g).all():
        raise ValueError(f"grid values must be finite, got {g.tolist()}")
    if (g < 0).any():
        raise ValueError(f"grid values must be non-negative, got {g.tolist()}")
    if torch.unique(g).numel() != g.numel():
        raise ValueError(f"grid values must be distinct, got {g.tolist()}")
    return g


def _check_fixed(fixed, v: int) -> dict[int, float]:
    if fixed is None:
        return {}
    if not isinstance(fixed, Mapping):
        raise TypeError(f"fixed must be a dict {{view_index: weight}}, got {type(fixed).__name__}")
    out: dict[int, float] = {}
    for key, val in fixed.items():
        if isinstance(key, bool) or not isinstance(key, int):
            raise ValueError(f"fixed view index must be an int, got {key!r}")
        if not 0 <= key < v:
            raise ValueError(f"fixed view index {key} out of range for V = {v} views")
        val = float(val)
        if not math.isfinite(val) or val < 0:
            raise ValueError(f"fixed weight for view {key} must be finite and non-negative, got {val}")
        out[key] = val
    return out


def _grid_rows(grid: Tensor, num_views: int, start: int, stop: int) -> Tensor:
    """Rows ``start:stop`` of the lexicographic product ``grid ** num_views`` as a [M, num_views] tensor.

    Row ``i`` has digit ``j`` equal to ``(i // G**(num_views-1-j)) % G``, so the first view is the most
    significant digit. This is the same order as ``itertools.product(grid, repeat=num_views)``.
    """
    g = grid.numel()
    idx = torch.arange(start, stop, dtype=torch.int64)
    if num_views == 0:
        return torch.zeros(stop - start, 0, dtype=grid.dtype)
    powers = torch.tensor([g ** (num_views - 1 - j) for j in range(num_views)], dtype=torch.int64)
    digits = (idx[:, None] // powers[None, :]) % g
    return grid[digits]


def _dominance_prune(dfree: Tensor, const: Tensor, scale: Tensor, keep: Tensor, gmin: float, gmax: float,
                     budget_bytes: int = 64 << 20) -> Tensor:
    """Drop pairs that another kept pair of the same cloud strictly dominates.

    ``dfree`` [N, K, F], ``const``/``scale`` [N, K], ``keep`` [N, K] bool. Pair q dominates p when
    ``min over the grid of (margin_q - margin_p) > rtol * (scale_p + scale_q)``. Strict dominance is
    transitive and acyclic, so every dropped pair is dominated by a pair that is kept.
    Whenever p's float32 margin makes the cloud wrong, that kept pair's margin does too.
    The kept pairs of each cloud are compacted and padded per block of clouds with similar counts.
    Memory is bounded by ``budget_bytes``. A cloud too large for the budget is simply not reduced.
    """
    f = dfree.shape[-1]
    out = keep.clone()
    counts = keep.sum(1)
    order = torch.argsort(counts, descending=True, stable=True)
    order = order[counts[order] > 1]
    # kept classes first (ascending), per cloud
    cls = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    i = 0
    while i < order.numel():
        cmax = int(counts[order[i]])
        per_cloud = cmax * cmax * (f + 3) * 8
        if per_cloud > budget_bytes:
            i += 1
            continue
        nb = max(1, budget_bytes // per_cloud)
        idx = order[i:i + nb]
        i += idx.numel()
        cl = cls[idx, :cmax]  # [b, cmax]
        valid = torch.arange(cmax)[None, :] < counts[idx][:, None]
        d = dfree[idx[:, None], cl]  # [b, cmax, F]
        cst = const[idx[:, None], cl]
        sc = scale[idx[:, None], cl]
        delta = d[:, :, None, :] - d[:, None, :, :]  # [b, q, p, F] = d_q - d_p
        lo = torch.minimum(delta * gmin, delta * gmax).sum(-1) + (cst[:, :, None] - cst[:, None, :])
        dom = (lo > _PRUNE_RTOL * (sc[:, :, None] + sc[:, None, :])) & valid[:, :, None] & valid[:, None, :]
        dominated = dom.any(dim=1) & valid  # [b, cmax]
        if dominated.any():
            bi, ci = dominated.nonzero(as_tuple=True)
            out[idx[bi], cl[bi, ci]] = False
    return out


def search_view_weights(
    features: Tensor,
    text_embeds: Tensor,
    labels: Tensor,
    grid: Sequence[float] | Tensor = (0.25, 0.5, 0.75, 1.0),
    fixed: dict[int, float] | None = None,
    chunk_size: int = 2048,
    progress: bool = False,
    *,
    prune: bool = True,
    sample_tile: int | None = None,
    workers: int | None = None,
) -> ViewWeightSearchResult:
    """Exhaustive grid search of the view weights on validation features.

    Every combination in ``grid ** (V - len(fixed))`` is evaluated for the views not in ``fixed``. The
    views in ``fixed`` keep their given weight. V2's reference search is ``fixed={0: .75, 1: .75, 2: .75}``
    (4**7 combinations), and V1's few-shot search is the full 4**10. Each combination gets its exact top-1
    accuracy on ``labels`` (ties between classes: the lowest class index wins, see the module doc).

    Tie-break between combinations: the result is the **first** combination in lexicographic grid order
    that reaches the maximal accuracy. That is the order of ``itertools.product(grid, repeat=F)`` over the
    free views in increasing view index, with the grid in the order given. The result is deterministic.
    No symmetry reduction is used. Scaling every weight by a constant does not change the argmax, but on
    the default grid only 1,025 of the 4**10 combinations are redundant in that way: the 1,022
    non-constant vectors with entries in {0.5, 1.0}, which are doubles of vectors in {0.25, 0.5}, and
    3 of the 4 constant vectors. That is about 0.1%. With non-zero ``fixed`` weights none are redundant.
    Skipping them would save nothing measurable and would complicate the tie-break.

    Algorithm (exact):

    * Margins. With ``D[n, k, v] = L[n, v, k] - L[n, v, y_n]``, cloud ``n`` is correct under ``w`` iff
      ``m_k(w) = sum_v w_v D[n, k, v]`` is ``< 0`` for every ``k < y_n`` and ``<= 0`` for every ``k > y_n``.
    * Exact pruning (``prune=True``). ``m_k`` is linear in each ``w_v``, so its minimum and maximum over the
      grid are reached at the grid's end points, taken view by view. A pair ``(n, k)`` whose maximum is
      ``< -tol`` can never make cloud n wrong and is dropped. A cloud with a pair whose minimum is ``> tol``
      is always wrong. A pair that some other pair of the same cloud beats by ``> tol`` for every
      combination is redundant. ``tol = 1e-6 * sum_v max_w|w_v D_v|`` is about 10 times the float32
      rounding of the margins, so pruning never changes a count.
    * Meet in the middle. The free views are split into a group A (leading views, most significant) and a
      group B (trailing views). ``DB[b, p] = w_B(b) . D_B[p]`` is precomputed for every B combination, and
      ``DA[a, p] = w_A(a) . D_A[p] + fixed part`` per chunk of A combinations. A chunk then needs one add
      and one running max per (combination, pair), and a compare and count per (combination, cloud).
      The clouds are sorted by their number of remaining pairs ("rank slices"), so nothing is padded.
      Float32 is used throughout. The sign of ``DA + DB`` is exact for the rounded DA and DB, and the
      strict comparison needed for ``k > y`` uses ``nextafter(DA, -inf)``.

    Args:
        features: ``[N, V, C]`` cached image features (used as given, see :func:`view_logits`).
        text_embeds: ``[K, C]`` class text embeddings (L2-normalised here).
        labels: ``[N]`` (or ``[N, 1]``) integer labels in ``[0, K)``.
        grid: candidate weights, distinct, finite and non-negative. Order defines the tie-break.
        fixed: ``{view_index: weight}`` for views that are not searched.
        chunk_size: number of combinations evaluated per vectorised chunk (default 2048). It is also the
            largest size of group B (``len(grid) ** F_B <= chunk_size``).
        progress: print pruning statistics and progress (rate, ETA, best so far) to stderr.
        prune: apply the exact pruning above. It is there for benchmarking: the result does not depend on it.
        sample_tile: number of clouds per inner tile. The default is about ``2**18 / chunk_size``, so each
            of the three per-worker buffers (two float32, one bool) is at most 1 MiB.
        workers: number of Python worker threads that evaluate chunks concurrently. The default is
            ``torch.get_num_threads()``. During the search the torch intra-op thread count is set to 1,
            and it is restored on return: the per-chunk ops are small, and OpenMP barriers on them
            collapse (10x or worse) when the cores are shared. The result does not depend on ``workers``.

    Memory: the float64 margins ``[N, K, V]``, the float32 table of B margins (``|B| * pairs * 4`` bytes,
    capped at 512 MiB by shrinking group B; about 110 MiB for the benchmark's N=2468, K=40) and about
    3 MiB of buffers per worker.

    Returns:
        :class:`ViewWeightSearchResult`.
    """
    features = _check_features(features)
    n, v, c = features.shape
    text_embeds = _as_tensor(text_embeds, "text_embeds")
    if text_embeds.ndim != 2:
        raise ValueError(f"text_embeds must have shape [K, C], got {tuple(text_embeds.shape)}")
    if text_embeds.shape[1] != c:
        raise ValueError(f"channel mismatch: features have C = {c} but text_embeds have C = {text_embeds.shape[1]}")
    k = text_embeds.shape[0]
    if k == 0:
        raise ValueError("text_embeds must contain at least one class (K = 0)")
    labels = check_label_ids(labels, n, k)
    grid = _check_grid(grid)
    fixed = _check_fixed(fixed, v)
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    chunk_size = int(chunk_size)
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if sample_tile is not None and int(sample_tile) < 1:
        raise ValueError(f"sample_tile must be >= 1, got {sample_tile}")

    text = _normalize_text(text_embeds, "text_embeds")
    logits_v = _view_logits64(features, text)  # [N, V, K]
    baseline_accuracy = _accuracy_from_logits(logits_v.sum(1), labels)

    free_views = [i for i in range(v) if i not in fixed]
    fixed_views = sorted(fixed)
    num_free = len(free_views)
    num_grid = grid.numel()
    num_candidates = num_grid ** num_free
    gmin, gmax = float(grid.min()), float(grid.max())

    # ---- margins D[n, k, v] relative to the true class ----------------------------------------------
    lk = logits_v.permute(0, 2, 1)  # [N, K, V]
    D = lk - lk.gather(1, labels[:, None, None].expand(n, 1, v))
    rows = torch.arange(n)
    is_other = torch.ones(n, k, dtype=torch.bool)
    is_other[rows, labels] = False
    upper = torch.arange(k)[None, :] > labels[:, None]  # k > y: tie keeps y (strict compare needed)

    dfree = D[:, :, free_views]  # [N, K, F]
    if fixed_views:
        wfix = torch.tensor([fixed[i] for i in fixed_views], dtype=torch.float64)
        const = D[:, :, fixed_views] @ wfix  # [N, K]
        scale = dfree.abs().sum(-1) * gmax + D[:, :, fixed_views].abs() @ wfix
    else:
        const = torch.zeros(n, k, dtype=torch.float64)
        scale = dfree.abs().sum(-1) * gmax

    if prune:
        tol = _PRUNE_RTOL * scale
        hi = torch.maximum(dfree * gmin, dfree * gmax).sum(-1) + const
        lo = torch.minimum(dfree * gmin, dfree * gmax).sum(-1) + const
        always_wrong = ((lo > tol) & is_other).any(dim=1)  # [N]
        keep = is_other & ~(hi < -tol) & ~always_wrong[:, None]
        keep = _dominance_prune(dfree, const, scale, keep, gmin, gmax)
    else:
        always_wrong = torch.zeros(n, dtype=torch.bool)
        keep = is_other.clone()

    counts_per_cloud = keep.sum(1)
    active = counts_per_cloud > 0
    n_always_correct = int((~active & ~always_wrong).sum())
    # clouds sorted by number of remaining pairs (descending) -> rank r covers a prefix of the clouds
    order = torch.argsort(counts_per_cloud, descending=True, stable=True)
    n_active = int(active.sum())
    order = order[:n_active]
    cnt_sorted = counts_per_cloud[order]
    # kept classes of each active cloud, ascending class index first
    cls_sorted = torch.argsort((~keep[order]).to(torch.int8), dim=1, stable=True)

    num_pairs = int(counts_per_cloud.sum())
    if progress:
        print(
            f"[search_view_weights] {num_candidates:,} combinations; {n_active}/{n} clouds undecided "
            f"({n_always_correct} always correct, {int(always_wrong.sum())} always wrong), "
            f"{num_pairs:,}/{n * (k - 1):,} (cloud, class) pairs left after pruning",
            file=sys.stderr,
            flush=True,
        )

    # ---- split free views into group A (leading, most significant) and group B (trailing) -----------
    # |B| = G**F_B <= chunk_size, and the precomputed table of B margins stays <= _TABLE_BYTES.
    num_b_views = 0
    while (num_b_views < num_free and num_grid ** (num_b_views + 1) <= chunk_size
           and num_grid ** (num_b_views + 1) * num_pairs * 4 <= _TABLE_BYTES):
        num_b_views += 1
    num_a_views = num_free - num_b_views
    size_a, size_b = num_grid ** num_a_views, num_grid ** num_b_views
    a_per_chunk = max(1, chunk_size // size_b)
    if sample_tile is None:
        sample_tile = max(16, (1 << 18) // (a_per_chunk * size_b))
    sample_tile = max(1, int(sample_tile))

    best_count = -1
    best_index = 0
    t_start = time.perf_counter()
    last_print = t_start

    if n_active == 0:
        # every combination gives the same accuracy: the first one wins
        best_count = n_always_correct
        best_index = 0
    else:
        max_rank = int(cnt_sorted[0])
        n_rank = [int((cnt_sorted > r).sum()) for r in range(max_rank)]
        offsets = [0]
        for nr in n_rank:
            offsets.append(offsets[-1] + nr)
        pair_cloud = torch.cat([order[: n_rank[r]] for r in range(max_rank)])
        pair_class = torch.cat([cls_sorted[: n_rank[r], r] for r in range(max_rank)])
        pair_d = dfree[pair_cloud, pair_class]  # [P, F]
        pair_const = const[pair_cloud, pair_class]  # [P]
        pair_upper = upper[pair_cloud, pair_class]  # [P]
        d_a = pair_d[:, :num_a_views].T.contiguous()  # [F_A, P]
        d_b = pair_d[:, num_a_views:].T.contiguous()  # [F_B, P]
        w_b = _grid_rows(grid, num_b_views, 0, size_b)  # [|B|, F_B]
        table_b = torch.empty(size_b, num_pairs, dtype=torch.float32)  # [|B|, P]
        col_block = max(1, (32 << 20) // (8 * size_b))  # float64 temporaries of at most 32 MiB
        for p0 in range(0, num_pairs, col_block):
            table_b[:, p0:p0 + col_block] = w_b @ d_b[:, p0:p0 + col_block]
        del pair_d, d_b

        neg_inf = torch.tensor(float("-inf"), dtype=torch.float32)
        local = threading.local()

        def eval_chunk(a0: int) -> tuple[int, int]:
            """Best (count, flat index) among A rows [a0, a0 + a_per_chunk) x all B rows."""
            bufs = getattr(local, "bufs", None)
            if bufs is None:
                bufs = local.bufs = (
                    torch.empty(a_per_chunk, size_b, sample_tile, dtype=torch.float32),
                    torch.empty(a_per_chunk, size_b, sample_tile, dtype=torch.float32),
                    torch.empty(a_per_chunk, size_b, sample_tile, dtype=torch.bool),
                )
            xbuf, tbuf, bbuf = bufs
            a1 = min(size_a, a0 + a_per_chunk)
            na = a1 - a0
            w_a = _grid_rows(grid, num_a_views, a0, a1)  # [na, F_A]
            table_a = (w_a @ d_a + pair_const).to(torch.float32)  # [na, P]
            table_a = torch.where(pair_upper, torch.nextafter(table_a, neg_inf), table_a)
            counts = torch.zeros(na, size_b, dtype=torch.int32)
            for s0 in range(0, n_active, sample_tile):
                s1 = min(n_active, s0 + sample_tile)
                w = s1 - s0
                x = xbuf[:na, :, :w]
                # rank 0 covers every active cloud
                torch.add(table_b[None, :, s0:s1], table_a[:, None, s0:s1], out=x)
                for r in range(1, max_rank):
                    e = min(s1, n_rank[r])
                    if e <= s0:
                        break
                    o = offsets[r]
                    tv = tbuf[:na, :, : e - s0]
                    torch.add(table_b[None, :, o + s0 : o + e], table_a[:, None, o + s0 : o + e], out=tv)
                    xv = x[:, :, : e - s0]
                    torch.maximum(xv, tv, out=xv)
                bv = bbuf[:na, :, :w]
                torch.lt(x, 0, out=bv)  # correct iff the largest margin is < 0
                counts += bv.view(torch.uint8).sum(-1, dtype=torch.int32)
            flat = counts.flatten()
            cmax = int(flat.max())
            return cmax, a0 * size_b + int((flat == cmax).nonzero()[0])

        starts = range(0, size_a, a_per_chunk)
        if workers is None:
            workers = torch.get_num_threads()
        workers = max(1, min(int(workers), len(starts)))
        prev_threads = torch.get_num_threads()

        def consume(results) -> None:
            nonlocal best_count, best_index, last_print
            for a0, (cmax, idx) in zip(starts, results):
                # strict ">" over increasing a0: the lexicographically first maximum wins
                if cmax > best_count:
                    best_count, best_index = cmax, idx
                if progress:
                    now = time.perf_counter()
                    a1 = min(size_a, a0 + a_per_chunk)
                    if now - last_print >= 2.0 or a1 == size_a:
                        last_print = now
                        done = a1 * size_b
                        rate = done / max(now - t_start, 1e-9)
                        eta = (num_candidates - done) / max(rate, 1e-9)
                        print(
                            f"[search_view_weights] {done:,}/{num_candidates:,} combinations "
                            f"({100.0 * done / num_candidates:.1f}%), {now - t_start:.1f}s elapsed, "
                            f"{rate:,.0f} comb/s, ETA {eta:.1f}s, "
                            f"best acc {(best_count + n_always_correct) / n:.4f}",
                            file=sys.stderr,
                            flush=True,
                        )

        # Parallelism is over chunks (``workers`` Python threads), with single-threaded torch ops: the ops
        # are small (about 1 MiB), and OpenMP barriers on them degrade badly (10x or more) when cores are
        # shared with other processes. The global torch thread count is restored afterwards.
        torch.set_num_threads(1)
        try:
            if workers == 1:
                consume(map(eval_chunk, starts))
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    consume(pool.map(eval_chunk, starts))
        finally:
            torch.set_num_threads(prev_threads)
        best_count += n_always_correct

    free_weights = _grid_rows(grid, num_free, best_index, best_index + 1)[0] if num_free else torch.zeros(0)
    weights = [0.0] * v
    for i, wv in zip(free_views, free_weights.tolist()):
        weights[i] = float(wv)
    for i in fixed_views:
        weights[i] = fixed[i]
    return ViewWeightSearchResult(
        weights=weights,
        accuracy=best_count / n,
        baseline_accuracy=baseline_accuracy,
        num_candidates=num_candidates,
    )


# --------------------------------------------------------------------------------------------------
# prompt search
# --------------------------------------------------------------------------------------------------
@dataclass
class PromptSearchResult:
    """Result of :func:`search_prompts`.

    Attributes:
        prompts: chosen sentence per class name. If no ``sentences`` were given, this is the placeholder
            ``"#<index>"``.
        accuracy: validation top-1 accuracy with the chosen prompts.
        baseline_accuracy: validation top-1 accuracy with the initial prompts (sentence 0, or ``initial``).
        indices: chosen sentence index per class name.
    """

    prompts: dict[str, str]
    accuracy: float
    baseline_accuracy: float
    indices: dict[str, int]


def _per_class_list(obj, class_names: list[str], what: str) -> list:
    if isinstance(obj, Mapping):
        missing = [c for c in class_names if c not in obj]
        if missing:
            raise ValueError(f"{what} has no entry for class(es) {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
        extra = [c for c in obj if c not in set(class_names)]
        if extra:
            raise ValueError(f"{what} has entries for unknown class(es) {extra[:5]}")
        return [obj[c] for c in class_names]
    items = list(obj)
    if len(items) != len(class_names):
        raise ValueError(f"{what} has {len(items)} entries but there are {len(class_names)} class_names")
    return items


def search_prompts(
    features: Tensor,
    prompt_embeds: Mapping[str, Tensor] | Sequence[Tensor],
    class_names: Sequence[str],
    labels: Tensor,
    view_weights: Tensor | Sequence[float] | None = None,
    initial: Mapping[str, int] | None = None,
    passes: int = 2,
    progress: bool = False,
    *,
    sentences: Mapping[str, Sequence[str]] | Sequence[Sequence[str]] | None = None,
) -> PromptSearchResult:
    """Greedy per-class prompt selection (PointCLIP V2 ``search_prompt_zs``, spec 4.7), on validation labels.

    Each class starts from sentence 0, or from ``initial[class]``. Then, for each of ``passes`` passes
    and for each class ``c`` in ``class_names`` order, the candidates ``j = 0..S_c-1`` are tried in turn:
    class c's text embedding is replaced by candidate j, and the replacement is kept only if the validation
    accuracy **strictly** improves. Only column c of the logits depends on the candidate, so every
    candidate of class c is scored at once. Doing the candidates one by one, and keeping a strict
    improvement each time, selects the **first** candidate with the highest accuracy, provided that
    accuracy beats the current one. The vectorised search does exactly that. A pass that changes nothing
    ends the search early, because any further pass would change nothing either.

    Scores are ``sum_v w_v <f[n, v], t_c>`` in float64, with the candidate embeddings L2-normalised.
    ``scale`` is dropped (it does not change the argmax). Ties between classes: the lowest class index wins.

    Args:
        features: ``[N, V, C]`` cached validation features (as in :func:`view_logits`).
        prompt_embeds: per class, ``[S_c, C]`` candidate sentence embeddings. Either a dict keyed by class
            name or a sequence aligned with ``class_names``.
        class_names: the K class names, in label order.
        labels: ``[N]`` integer labels.
        view_weights: ``[V]`` non-negative view weights. ``None`` means equal weights.
        initial: optional starting sentence index per class name. Missing classes start at 0.
        passes: number of greedy passes (2 in the reference).
        progress: print one line per pass to stderr.
        sentences: optional sentence texts, aligned with ``prompt_embeds``, used to fill ``prompts``.

    Returns:
        :class:`PromptSearchResult`.
    """
    features = _check_features(features)
    n, v, c = features.shape
    class_names = list(class_names)
    if not class_names:
        raise ValueError("class_names must not be empty")
    if len(set(class_names)) != len(class_names):
        raise ValueError("class_names must be unique")
    k = len(class_names)
    labels = check_label_ids(labels, n, k)
    if isinstance(passes, bool) or int(passes) != passes or passes < 0:
        raise ValueError(f"passes must be a non-negative integer, got {passes!r}")
    passes = int(passes)

    cands = []
    for name, emb in zip(class_names, _per_class_list(prompt_embeds, class_names, "prompt_embeds")):
        emb = _as_tensor(emb, f"prompt_embeds[{name!r}]")
        if emb.ndim == 1:
            emb = emb[None]
        if emb.ndim != 2:
            raise ValueError(f"prompt_embeds[{name!r}] must have shape [S, C], got {tuple(emb.shape)}")
        if emb.shape[0] == 0:
            raise ValueError(f"prompt_embeds[{name!r}] has no candidate sentences")
        if emb.shape[1] != c:
            raise ValueError(
                f"channel mismatch: features have C = {c} but prompt_embeds[{name!r}] has C = {emb.shape[1]}"
            )
        cands.append(_normalize_text(emb, f"prompt_embeds[{name!r}]"))
    sizes = [e.shape[0] for e in cands]

    texts: list[list[str]] | None = None
    if sentences is not None:
        texts = [list(s) for s in _per_class_list(sentences, class_names, "sentences")]
        for name, s, size in zip(class_names, texts, sizes):
            if len(s) != size:
                raise ValueError(f"sentences[{name!r}] has {len(s)} entries but prompt_embeds has {size}")

    current = [0] * k
    if initial is not None:
        for name, j in initial.items():
            if name not in class_names:
                raise ValueError(f"initial has an unknown class {name!r}")
            ci = class_names.index(name)
            if isinstance(j, bool) or int(j) != j or not 0 <= int(j) < sizes[ci]:
                raise ValueError(f"initial[{name!r}] = {j!r} is out of range for {sizes[ci]} sentences")
            current[ci] = int(j)

    weights = (torch.ones(v, dtype=torch.float64) if view_weights is None
               else _check_view_weights(view_weights, v))
    pooled = torch.einsum("nvc,v->nc", features.to(torch.float64), weights)  # [N, C]

    # Candidate scores [N, S_c] per class. They are cached when small, otherwise recomputed per visit.
    # Current logits are taken from these same numbers, so the per-candidate and full scores agree bit
    # for bit.
    total = sum(sizes) * n * 8
    cache: list[Tensor | None] = [None] * k
    cache_all = total <= (512 << 20)

    def cand_scores(ci: int) -> Tensor:
        if cache[ci] is not None:
            return cache[ci]
        sc = pooled @ cands[ci].T
        if cache_all:
            cache[ci] = sc
        return sc

    if cache_all:  # one matmul for all candidates, with the caller's thread count
        allc = pooled @ torch.cat(cands).T
        cache = list(torch.split(allc, sizes, dim=1))
    scores = torch.empty(n, k, dtype=torch.float64)
    for ci in range(k):
        scores[:, ci] = cand_scores(ci)[:, current[ci]]

    def n_correct(s: Tensor) -> int:
        return int((s.argmax(dim=1) == labels).sum())

    cur_correct = n_correct(scores)
    baseline_correct = cur_correct
    rows = torch.arange(n)
    inf = torch.tensor(float("inf"), dtype=torch.float64)

    def candidate_counts(ci: int, cs: Tensor) -> Tensor:
        """Number of correct clouds for every candidate column ``cs`` [N, S] of class ``ci``.

        Cloud n is correct iff ``tl[n] <= cs[n, j] <= th[n]``:

        * label ci: the candidate must be > max_{k<ci} s_k and >= max_{k>ci} s_k, so
          ``tl = max(upper, nextafter(lower, +inf))`` and ``th = +inf``;
        * label y != ci: y must beat every k not in {ci, y} (``base_ok``), and the candidate must stay
          below s_y, strictly if ci < y. So ``th = s_y`` (or ``nextafter(s_y, -inf)``), ``tl = -inf``,
          and ``th = -inf`` when ``base_ok`` fails.
        """
        lower = scores[:, :ci].amax(dim=1) if ci > 0 else torch.full((n,), -inf)
        upper = scores[:, ci + 1:].amax(dim=1) if ci < k - 1 else torch.full((n,), -inf)
        is_c = labels == ci
        s_wo = scores.clone()
        s_wo[:, ci] = -inf
        base_ok = s_wo.argmax(dim=1) == labels
        s_y = scores[rows, labels]
        th = torch.where(labels > ci, torch.nextafter(s_y, -inf), s_y)
        th = torch.where(base_ok, th, -inf)
        th = torch.where(is_c, inf, th)
        tl = torch.where(is_c, torch.maximum(upper, torch.nextafter(lower, inf)), -inf)
        return ((cs >= tl[:, None]) & (cs <= th[:, None])).sum(0)

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: avoid OpenMP barrier overhead (restored below)
    try:
        for p in range(passes):
            changed = 0
            for ci in range(k):
                cs = cand_scores(ci)  # [N, S]
                per_cand = candidate_counts(ci, cs)
                best = int(per_cand.max())
                if best > cur_correct:  # strict improvement; first candidate with the best count
                    j = int((per_cand == best).nonzero()[0])
                    current[ci] = j
                    scores[:, ci] = cs[:, j]
                    cur_correct = best
                    changed += 1
            if progress:
                print(
                    f"[search_prompts] pass {p + 1}/{passes}: {changed} class(es) changed, "
                    f"accuracy {cur_correct / n:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
            if changed == 0:
                break
    finally:
        torch.set_num_threads(prev_threads)

    # sanity: the incremental count must equal a fresh evaluation
    final_correct = n_correct(scores)
    if final_correct != cur_correct:  # pragma: no cover - internal invariant
        raise RuntimeError(f"internal error: incremental count {cur_correct} != recomputed {final_correct}")

    indices = {name: current[i] for i, name in enumerate(class_names)}
    prompts = {
        name: (texts[i][current[i]] if texts is not None else f"#{current[i]}")
        for i, name in enumerate(class_names)
    }
    return PromptSearchResult(
        prompts=prompts,
        accuracy=cur_correct / n,
        baseline_accuracy=baseline_correct / n,
        indices=indices,
    )


# --------------------------------------------------------------------------------------------------
# the searches applied to a model
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def encode_class_prompts(model, library: Mapping[str, Sequence[str]], class_names: Sequence[str],
                         batch_size: int = 256) -> dict[str, Tensor]:
    """Normalised CLIP text embeddings `[S_c, C]` of every sentence of a `{class: [sentence, ...]}` library."""
    from .prompts import check_class_prompts

    check_class_prompts(library, class_names)
    embeds = {}
    for name in class_names:
        chunks = []
        for start in range(0, len(library[name]), batch_size):
            tokens = model.tokenize(library[name][start : start + batch_size])
            chunks.append(model.get_text_features(**tokens).float().cpu())
        embeds[name] = torch.cat(chunks)
    return embeds


def tune_on_validation(model, validation_dataset, *, prompt_library: Mapping[str, Sequence[str]] | None = None,
                       search_weights: bool = True, grid=(0.25, 0.5, 0.75, 1.0), fixed: dict[int, float] | None = None,
                       batch_size: int = 32, progress: bool = True) -> dict:
    """
    Tune a model's prompts and view weights on a validation split (never the test split) and store them in its config,
    so they persist through `save_pretrained` / `push_to_hub`. One CLIP pass encodes the clouds; then the greedy prompt
    search over `prompt_library` (if given) picks one sentence per class (`config.class_prompts`), and the exhaustive
    grid search picks the view weights (`config.view_weights`). Returns a JSON-able summary of both searches.
    """
    from .encoding import class_names_for, encode_dataset

    class_names = class_names_for(model, validation_dataset)
    features, labels = encode_dataset(model, validation_dataset, batch_size=batch_size, progress=progress)
    with torch.no_grad():
        embeds = model.get_point_cloud_embeds(features, apply_view_weights=False).float().cpu()
    labels = labels.cpu()
    summary = {"validation_size": len(labels), "class_names": class_names}
    if prompt_library is not None:
        candidates = encode_class_prompts(model, prompt_library, class_names)
        found = search_prompts(embeds, candidates, class_names, labels, view_weights=model.config.view_weights,
                               progress=progress, sentences={c: list(prompt_library[c]) for c in class_names})
        model.config.class_prompts = {name: [sentence] for name, sentence in found.prompts.items()}
        summary["prompts"] = {"accuracy": found.accuracy, "baseline_accuracy": found.baseline_accuracy,
                              "chosen": found.prompts}
    if search_weights:
        text = model.get_label_embeddings(class_names).float().cpu()
        found = search_view_weights(embeds, text, labels, grid=grid, fixed=fixed, progress=progress)
        model.set_view_weights(found.weights)
        summary["view_weights"] = {"accuracy": found.accuracy, "baseline_accuracy": found.baseline_accuracy,
                                   "weights": found.weights, "num_candidates": found.num_candidates}
    return summary
