"""Exhaustive, exact grid search of PointCLIP's view weights on cached validation features.

Every combination in ``grid ** F`` (``F`` free views, the others ``fixed``) gets its exact top-1 accuracy; V2's
reference search is ``fixed={0: .75, 1: .75, 2: .75}`` (4**7 combinations), V1's few-shot search the full 4**10.

Tie-break between combinations: the **first** combination in lexicographic grid order that reaches the maximal
accuracy, the order of ``itertools.product(grid, repeat=F)`` over the free views in increasing view index, with the
grid in the order given. No symmetry reduction is used. Scaling every weight by a constant does not change the
argmax, but on the default grid only 1,025 of the 4**10 combinations are redundant in that way (the 1,022
non-constant vectors with entries in {0.5, 1.0}, doubles of vectors in {0.25, 0.5}, and 3 of the 4 constant
vectors), about 0.1%; with non-zero ``fixed`` weights none are. Skipping them would save nothing measurable and would
complicate the tie-break.

Algorithm (exact), in the steps of `search_view_weights`:

* Margins (`_margins`). With ``D[n, k, v] = L[n, v, k] - L[n, v, y_n]``, cloud ``n`` is correct under ``w`` iff
  ``m_k(w) = sum_v w_v D[n, k, v]`` is ``< 0`` for every ``k < y_n`` and ``<= 0`` for every ``k > y_n``.
* Exact pruning (`_prune_pairs`, ``prune=True``). ``m_k`` is linear in each ``w_v``, so its minimum and maximum over
  the grid are reached at the grid's end points, taken view by view. A pair ``(n, k)`` whose maximum is ``< -tol``
  can never make cloud n wrong and is dropped. A cloud with a pair whose minimum is ``> tol`` is always wrong. A pair
  that some other pair of the same cloud beats by ``> tol`` for every combination is redundant
  (`_dominance_prune`). ``tol = 1e-6 * sum_v max_w|w_v D_v|`` is about 10 times the float32 rounding of the
  margins, so pruning never changes a count.
* Rank slices (`_pair_slices`). The clouds are sorted by their number of remaining pairs; slice r holds the r-th
  kept pair of every cloud with more than r of them, so nothing is padded.
* Meet in the middle (`_ChunkEvaluator`). The free views are split into a group A (leading views, most significant)
  and a group B (trailing views). ``DB[b, p] = w_B(b) . D_B[p]`` is precomputed for every B combination, and
  ``DA[a, p] = w_A(a) . D_A[p] + fixed part`` per chunk of A combinations. A chunk then needs one add and one
  running max per (combination, pair), and a compare and count per (combination, cloud). Float32 is used
  throughout. The sign of ``DA + DB`` is exact for the rounded DA and DB, and the strict comparison needed for
  ``k > y`` uses ``nextafter(DA, -inf)``.
* Chunks in worker threads (`_best_over_chunks`), the first best combination kept in grid order.

Memory: the float64 margins ``[N, K, V]``, the float32 table of B margins (``|B| * pairs * 4`` bytes, capped at
512 MiB by shrinking group B; about 110 MiB for the benchmark's N=2468, K=40) and about 3 MiB of buffers per worker.
"""

import math
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from ..argument_checks import check_counts, check_numbers
from ._checks import (
    as_tensor,
    check_features,
    check_label_ids,
    check_tensor,
    check_text_embeds,
    normalize_text,
    view_logits64,
)

# Relative safety margin of the exact pruning rules (see the module docstring).
_PRUNE_RTOL = 1e-6
# Upper bound for the precomputed float32 margin table of the trailing view group (bytes).
_TABLE_BYTES = 512 << 20


def view_logits(features: Tensor, text_embeds: Tensor) -> Tensor:
    """
    Unscaled per-view logits ``L[n, v, k] = <f[n, v], t[k] / |t[k]|>``. With per-view-normalised features this is
    the per-view cosine similarity, and ``logits = scale / sqrt(V) * (L * w[None, :, None]).sum(1)`` gives the
    PointCLIP logits for view weights ``w``.

    Args:
        features (`torch.Tensor` of shape `(N, V, C)`):
            Used as given (normally already L2-normalised per view).
        text_embeds (`torch.Tensor` of shape `(K, C)`):
            Class text embeddings, L2-normalised here.

    Returns:
        `torch.Tensor` of shape `(N, V, K)`, computed in float64 and returned in the features' dtype, or in float32
        when the features are float16 or bfloat16.
    """
    features = check_features(features)
    text_embeds = check_text_embeds(text_embeds, features.shape[2])
    out = view_logits64(features, normalize_text(text_embeds, "text_embeds"))
    dtype = features.dtype if features.dtype in (torch.float32, torch.float64) else torch.float32
    return out.to(dtype)


@dataclass
class ViewWeightSearchResult:
    """
    Result of `search_view_weights`.

    Args:
        weights (`list[float]`):
            The best weight per view (length V), including the `fixed` ones.
        accuracy (`float`):
            Top-1 accuracy of `weights` on the given labels (fraction in [0, 1]).
        baseline_accuracy (`float`):
            Top-1 accuracy with equal (all-one) weights, i.e. the unweighted features; the reference's "before
            search" figure.
        num_candidates (`int`):
            Number of weight combinations evaluated, `len(grid) ** (V - len(fixed))`.
    """

    weights: list[float]
    accuracy: float
    baseline_accuracy: float
    num_candidates: int


@dataclass
class _Margins:
    """Margins of every (cloud, class) pair against the cloud's true class, split into searched and fixed views."""

    free: Tensor  # (N, K, F) float64: D restricted to the free views
    const: Tensor  # (N, K): the fixed views' weighted margin
    scale: Tensor  # (N, K): sum_v max_w |w_v D_v|, the scale of the pruning tolerance
    is_other: Tensor  # (N, K) bool: k != y
    upper: Tensor  # (N, K) bool: k > y, where a tie keeps y and the comparison must be strict


@dataclass
class _Pairs:
    """The kept pairs in rank slices: slice r, at `offsets[r]`, covers the first `n_rank[r]` active clouds."""

    n_active: int
    n_rank: list[int]
    offsets: list[int]
    margins: Tensor  # (P, F) float64
    const: Tensor  # (P,)
    upper: Tensor  # (P,) bool

    @property
    def num_pairs(self) -> int:
        return self.offsets[-1]


def _check_grid(grid) -> Tensor:
    g = as_tensor(list(grid) if not isinstance(grid, Tensor) else grid, "grid").to(torch.float64).flatten()
    return check_tensor(g, "grid", "G", bounds=(0, math.inf), distinct=True)


def _check_fixed(fixed, v: int) -> dict[int, float]:
    if fixed is None:
        return {}
    if not isinstance(fixed, Mapping):
        raise TypeError(f"fixed must be a dict {{view_index: weight}}, got {type(fixed).__name__}")
    out: dict[int, float] = {}
    for key, val in fixed.items():
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < v:
            raise ValueError(f"fixed view index {key!r} out of range: an int in [0, {v}) for V = {v} views")
        val = float(val)
        check_numbers({f"fixed weight for view {key}": val})
        out[key] = val
    return out


def _check_inputs(features, text_embeds, labels, grid, fixed, chunk_size, workers, sample_tile):
    """The checked features, normalised text, labels, grid and fixed weights; a `ValueError` on any bad input."""
    features = check_features(features)
    n, v, c = features.shape
    text_embeds = check_text_embeds(text_embeds, c)
    labels = check_label_ids(labels, n, text_embeds.shape[0])
    grid = _check_grid(grid)
    fixed = _check_fixed(fixed, v)
    counts = {"chunk_size": chunk_size, "workers": workers, "sample_tile": sample_tile}
    check_counts(counts, optional=("workers", "sample_tile"))
    return features, normalize_text(text_embeds, "text_embeds"), labels, grid, fixed


def _grid_rows(grid: Tensor, num_views: int, start: int, stop: int) -> Tensor:
    """
    Rows `start:stop` of the lexicographic product `grid ** num_views`, the order of
    `itertools.product(grid, repeat=num_views)`: row i has digit j equal to `(i // G**(num_views-1-j)) % G`, so the
    first view is the most significant digit.

    Returns:
        `torch.Tensor` of shape `(stop - start, num_views)`.
    """
    g = grid.numel()
    idx = torch.arange(start, stop, dtype=torch.int64)
    if num_views == 0:
        return torch.zeros(stop - start, 0, dtype=grid.dtype)
    powers = torch.tensor([g ** (num_views - 1 - j) for j in range(num_views)], dtype=torch.int64)
    digits = (idx[:, None] // powers[None, :]) % g
    return grid[digits]


def _margins(logits_v: Tensor, labels: Tensor, free_views: list[int], fixed: dict[int, float], gmax: float) -> _Margins:
    """The `_Margins` of per-view logits `(N, V, K)` (float64)."""
    n, v, k = logits_v.shape
    by_class = logits_v.permute(0, 2, 1)
    margins = by_class - by_class.gather(1, labels[:, None, None].expand(n, 1, v))
    is_other = torch.ones(n, k, dtype=torch.bool)
    is_other[torch.arange(n), labels] = False
    upper = torch.arange(k)[None, :] > labels[:, None]
    free = margins[:, :, free_views]
    fixed_views = sorted(fixed)
    if fixed_views:
        wfix = torch.tensor([fixed[i] for i in fixed_views], dtype=torch.float64)
        const = margins[:, :, fixed_views] @ wfix
        scale = free.abs().sum(-1) * gmax + margins[:, :, fixed_views].abs() @ wfix
    else:
        const = torch.zeros(n, k, dtype=torch.float64)
        scale = free.abs().sum(-1) * gmax
    return _Margins(free, const, scale, is_other, upper)


def _dominance_prune(
    dfree: Tensor, const: Tensor, scale: Tensor, keep: Tensor, gmin: float, gmax: float, budget_bytes: int = 64 << 20
) -> Tensor:
    """
    Drop pairs that another kept pair of the same cloud strictly dominates: q dominates p when the minimum over the
    grid of `margin_q - margin_p` exceeds `rtol * (scale_p + scale_q)`. Strict dominance is transitive and acyclic,
    so every dropped pair is dominated by a kept pair, and whenever p's float32 margin makes the cloud wrong, that
    kept pair's margin does too. The kept pairs of each cloud are compacted and padded per block of clouds with
    similar counts; a cloud too large for `budget_bytes` is not reduced.

    Args:
        dfree (`torch.Tensor` of shape `(N, K, F)`):
            The margins over the free views (`_Margins.free`).
        const (`torch.Tensor` of shape `(N, K)`):
            The fixed views' margins (`_Margins.const`).
        scale (`torch.Tensor` of shape `(N, K)`):
            The tolerance scale (`_Margins.scale`).
        keep (`torch.Tensor` of shape `(N, K)`, bool):
            The pairs kept so far.
        gmin (`float`):
            The grid's smallest value.
        gmax (`float`):
            The grid's largest value.
        budget_bytes (`int`, *optional*, defaults to 64 MiB):
            Memory bound of one block of clouds.

    Returns:
        `torch.Tensor` of shape `(N, K)`, bool: the pairs still kept.
    """
    f = dfree.shape[-1]
    out = keep.clone()
    counts = keep.sum(1)
    order = torch.argsort(counts, descending=True, stable=True)
    order = order[counts[order] > 1]
    kept_first = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept classes first, ascending, per cloud
    i = 0
    while i < order.numel():
        cmax = int(counts[order[i]])
        per_cloud = cmax * cmax * (f + 3) * 8
        if per_cloud > budget_bytes:
            i += 1
            continue
        clouds_per_block = max(1, budget_bytes // per_cloud)
        clouds = order[i : i + clouds_per_block]
        i += clouds.numel()
        classes = kept_first[clouds, :cmax]  # [b, cmax]
        valid = torch.arange(cmax)[None, :] < counts[clouds][:, None]
        d = dfree[clouds[:, None], classes]  # [b, cmax, F]
        fixed_margins = const[clouds[:, None], classes]
        tolerances = scale[clouds[:, None], classes]
        delta = d[:, :, None, :] - d[:, None, :, :]  # [b, q, p, F] = d_q - d_p
        fixed_difference = fixed_margins[:, :, None] - fixed_margins[:, None, :]
        lowest = torch.minimum(delta * gmin, delta * gmax).sum(-1) + fixed_difference
        tolerance = _PRUNE_RTOL * (tolerances[:, :, None] + tolerances[:, None, :])
        dominates = (lowest > tolerance) & valid[:, :, None] & valid[:, None, :]
        dominated = dominates.any(dim=1) & valid  # [b, cmax]
        if dominated.any():
            bi, ci = dominated.nonzero(as_tuple=True)
            out[clouds[bi], classes[bi, ci]] = False
    return out


def _prune_pairs(margins: _Margins, gmin: float, gmax: float, prune: bool) -> tuple[Tensor, Tensor]:
    """The pairs that can decide a cloud, `(N, K)` bool, and the clouds wrong under every combination, `(N,)`."""
    if not prune:
        return margins.is_other.clone(), torch.zeros(margins.is_other.shape[0], dtype=torch.bool)
    dfree, const = margins.free, margins.const
    tol = _PRUNE_RTOL * margins.scale
    hi = torch.maximum(dfree * gmin, dfree * gmax).sum(-1) + const
    lo = torch.minimum(dfree * gmin, dfree * gmax).sum(-1) + const
    always_wrong = ((lo > tol) & margins.is_other).any(dim=1)
    keep = margins.is_other & ~(hi < -tol) & ~always_wrong[:, None]
    return _dominance_prune(dfree, const, margins.scale, keep, gmin, gmax), always_wrong


def _pair_slices(margins: _Margins, keep: Tensor) -> _Pairs:
    """Lay the kept pairs out in rank slices over the active clouds, sorted by decreasing number of kept pairs."""
    counts_per_cloud = keep.sum(1)
    n_active = int((counts_per_cloud > 0).sum())
    order = torch.argsort(counts_per_cloud, descending=True, stable=True)[:n_active]
    cnt_sorted = counts_per_cloud[order]
    cls_sorted = torch.argsort((~keep[order]).to(torch.int8), dim=1, stable=True)  # kept classes first, ascending
    max_rank = int(cnt_sorted[0]) if n_active else 0
    n_rank = [int((cnt_sorted > r).sum()) for r in range(max_rank)]
    offsets = [0]
    for nr in n_rank:
        offsets.append(offsets[-1] + nr)
    if n_active == 0:
        empty = torch.zeros(0, dtype=torch.long)
        pair_cloud, pair_class = empty, empty
    else:
        pair_cloud = torch.cat([order[: n_rank[r]] for r in range(max_rank)])
        pair_class = torch.cat([cls_sorted[: n_rank[r], r] for r in range(max_rank)])
    return _Pairs(
        n_active,
        n_rank,
        offsets,
        margins.free[pair_cloud, pair_class],
        margins.const[pair_cloud, pair_class],
        margins.upper[pair_cloud, pair_class],
    )


class _ChunkEvaluator:
    """
    Exact correct-cloud counts for chunks of combinations, by meet in the middle: the trailing views (group B) are
    tabulated once, the leading ones (group A) per chunk. Calls from several threads are safe (per-thread buffers).
    """

    def __init__(self, grid: Tensor, pairs: _Pairs, num_free: int, chunk_size: int, sample_tile: int | None):
        num_grid = grid.numel()
        num_b_views = 0  # |B| = G**F_B <= chunk_size, and the table of B margins stays <= _TABLE_BYTES
        while (
            num_b_views < num_free
            and num_grid ** (num_b_views + 1) <= chunk_size
            and num_grid ** (num_b_views + 1) * pairs.num_pairs * 4 <= _TABLE_BYTES
        ):
            num_b_views += 1
        self.grid, self.pairs = grid, pairs
        self.num_a_views = num_free - num_b_views
        self.size_a, self.size_b = num_grid**self.num_a_views, num_grid**num_b_views
        self.a_per_chunk = max(1, chunk_size // self.size_b)
        if sample_tile is None:
            sample_tile = max(16, (1 << 18) // (self.a_per_chunk * self.size_b))
        self.sample_tile = max(1, int(sample_tile))
        self.d_a = pairs.margins[:, : self.num_a_views].T.contiguous()  # [F_A, P]
        d_b = pairs.margins[:, self.num_a_views :].T.contiguous()  # [F_B, P]
        w_b = _grid_rows(grid, num_b_views, 0, self.size_b)  # [|B|, F_B]
        self.table_b = torch.empty(self.size_b, pairs.num_pairs, dtype=torch.float32)  # [|B|, P]
        col_block = max(1, (32 << 20) // (8 * self.size_b))  # float64 temporaries of at most 32 MiB
        for p0 in range(0, pairs.num_pairs, col_block):
            self.table_b[:, p0 : p0 + col_block] = w_b @ d_b[:, p0 : p0 + col_block]
        self._neg_inf = torch.tensor(float("-inf"), dtype=torch.float32)
        self._local = threading.local()

    @property
    def starts(self) -> range:
        return range(0, self.size_a, self.a_per_chunk)

    def _buffers(self) -> tuple[Tensor, Tensor, Tensor]:
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            shape = (self.a_per_chunk, self.size_b, self.sample_tile)
            bufs = self._local.bufs = (
                torch.empty(shape, dtype=torch.float32),
                torch.empty(shape, dtype=torch.float32),
                torch.empty(shape, dtype=torch.bool),
            )
        return bufs

    def __call__(self, a0: int) -> tuple[int, int]:
        """The best (count, flat index) among A rows `[a0, a0 + a_per_chunk)` times all B rows."""
        xbuf, tbuf, bbuf = self._buffers()
        pairs, size_b, table_b = self.pairs, self.size_b, self.table_b
        a1 = min(self.size_a, a0 + self.a_per_chunk)
        na = a1 - a0
        w_a = _grid_rows(self.grid, self.num_a_views, a0, a1)  # [na, F_A]
        table_a = (w_a @ self.d_a + pairs.const).to(torch.float32)  # [na, P]
        table_a = torch.where(pairs.upper, torch.nextafter(table_a, self._neg_inf), table_a)
        counts = torch.zeros(na, size_b, dtype=torch.int32)
        for s0 in range(0, pairs.n_active, self.sample_tile):
            s1 = min(pairs.n_active, s0 + self.sample_tile)
            x = xbuf[:na, :, : s1 - s0]
            torch.add(table_b[None, :, s0:s1], table_a[:, None, s0:s1], out=x)  # rank 0 covers every active cloud
            for r in range(1, len(pairs.n_rank)):
                e = min(s1, pairs.n_rank[r])
                if e <= s0:
                    break
                o = pairs.offsets[r]
                tv = tbuf[:na, :, : e - s0]
                torch.add(table_b[None, :, o + s0 : o + e], table_a[:, None, o + s0 : o + e], out=tv)
                xv = x[:, :, : e - s0]
                torch.maximum(xv, tv, out=xv)
            bv = bbuf[:na, :, : s1 - s0]
            torch.lt(x, 0, out=bv)  # correct iff the largest margin is < 0
            counts += bv.view(torch.uint8).sum(-1, dtype=torch.int32)
        flat = counts.flatten()
        cmax = int(flat.max())
        return cmax, a0 * size_b + int((flat == cmax).nonzero()[0])


class _ProgressReport:
    """Progress lines on stderr, at most one every 2 seconds and one at the end."""

    def __init__(self, enabled: bool, num_candidates: int, n: int, n_always_correct: int):
        self.enabled, self.num_candidates, self.n, self.n_always_correct = enabled, num_candidates, n, n_always_correct
        self.t_start = self.last_print = time.perf_counter()

    def pruning(self, n_active: int, always_wrong: int, num_pairs: int, k: int) -> None:
        if self.enabled:
            print(
                f"[search_view_weights] {self.num_candidates:,} combinations; {n_active}/{self.n} clouds undecided "
                f"({self.n_always_correct} always correct, {always_wrong} always wrong), "
                f"{num_pairs:,}/{self.n * (k - 1):,} (cloud, class) pairs left after pruning",
                file=sys.stderr,
                flush=True,
            )

    def chunk_done(self, done: int, best_count: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last_print < 2.0 and done < self.num_candidates:
            return
        self.last_print = now
        rate = done / max(now - self.t_start, 1e-9)
        eta = (self.num_candidates - done) / max(rate, 1e-9)
        print(
            f"[search_view_weights] {done:,}/{self.num_candidates:,} combinations "
            f"({100.0 * done / self.num_candidates:.1f}%), {now - self.t_start:.1f}s elapsed, "
            f"{rate:,.0f} comb/s, ETA {eta:.1f}s, best acc {(best_count + self.n_always_correct) / self.n:.4f}",
            file=sys.stderr,
            flush=True,
        )


def _first_best(evaluator: _ChunkEvaluator, results, report: _ProgressReport) -> tuple[int, int]:
    """The best (count, flat index) over the chunks' results, the lexicographically first on ties."""
    best_count, best_index = -1, 0
    for a0, (cmax, idx) in zip(evaluator.starts, results):
        if cmax > best_count:  # strict ">" over increasing a0
            best_count, best_index = cmax, idx
        report.chunk_done(min(evaluator.size_a, a0 + evaluator.a_per_chunk) * evaluator.size_b, best_count)
    return best_count, best_index


def _best_over_chunks(evaluator: _ChunkEvaluator, workers: int | None, report: _ProgressReport) -> tuple[int, int]:
    """
    Evaluate every chunk in `workers` Python threads, with single-threaded torch ops: the ops are small (about
    1 MiB), and OpenMP barriers on them degrade badly (10x or more) when cores are shared with other processes. The
    global torch thread count is restored afterwards.
    """
    starts = evaluator.starts
    if workers is None:
        workers = torch.get_num_threads()
    workers = max(1, min(int(workers), len(starts)))
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if workers == 1:
            return _first_best(evaluator, map(evaluator, starts), report)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return _first_best(evaluator, pool.map(evaluator, starts), report)
    finally:
        torch.set_num_threads(prev_threads)


def _selected_weights(grid: Tensor, free_views: list[int], fixed: dict[int, float], index: int, v: int) -> list:
    """The weight of every view for the flat combination `index` of the free views."""
    free_weights = _grid_rows(grid, len(free_views), index, index + 1)[0] if free_views else torch.zeros(0)
    weights = [0.0] * v
    for i, wv in zip(free_views, free_weights.tolist()):
        weights[i] = float(wv)
    for i in sorted(fixed):
        weights[i] = fixed[i]
    return weights


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
    """
    Exhaustive grid search of the view weights on validation features: every combination in
    `grid ** (V - len(fixed))` gets its exact top-1 accuracy (class ties: the lowest index wins), and the first
    best one in lexicographic grid order is returned. See the module docstring for the exact algorithm.

    Args:
        features (`torch.Tensor` of shape `(N, V, C)`):
            Cached image features, used as given (see `view_logits`).
        text_embeds (`torch.Tensor` of shape `(K, C)`):
            Class text embeddings, L2-normalised here.
        labels (`torch.Tensor` of shape `(N,)` or `(N, 1)`):
            Integer labels in `[0, K)`.
        grid (`Sequence[float]` or `torch.Tensor`, *optional*, defaults to `(0.25, 0.5, 0.75, 1.0)`):
            Candidate weights, distinct, finite and non-negative. Their order defines the tie-break.
        fixed (`dict[int, float]`, *optional*):
            `{view_index: weight}` for views that are not searched.
        chunk_size (`int`, *optional*, defaults to 2048):
            Combinations evaluated per vectorised chunk; also the largest size of group B.
        progress (`bool`, *optional*, defaults to `False`):
            Print pruning statistics and progress (rate, ETA, best so far) to stderr.
        prune (`bool`, *optional*, defaults to `True`):
            Apply the exact pruning. For benchmarking: the result does not depend on it.
        sample_tile (`int`, *optional*):
            Clouds per inner tile. The default, about `2**18 / chunk_size`, keeps each of the three per-worker
            buffers (two float32, one bool) at most 1 MiB.
        workers (`int`, *optional*):
            Python worker threads evaluating chunks concurrently, `torch.get_num_threads()` by default. The torch
            intra-op thread count is 1 during the search and restored on return. The result does not depend on it.

    Returns:
        [`ViewWeightSearchResult`].
    """
    features, text, labels, grid, fixed = _check_inputs(
        features, text_embeds, labels, grid, fixed, chunk_size, workers, sample_tile
    )
    n, v, _ = features.shape
    logits_v = view_logits64(features, text)
    baseline_accuracy = float((logits_v.sum(1).argmax(dim=-1) == labels).to(torch.float64).mean())
    free_views = [i for i in range(v) if i not in fixed]
    num_candidates = grid.numel() ** len(free_views)
    gmin, gmax = float(grid.min()), float(grid.max())

    margins = _margins(logits_v, labels, free_views, fixed, gmax)
    keep, always_wrong = _prune_pairs(margins, gmin, gmax, prune)
    pairs = _pair_slices(margins, keep)
    n_always_correct = int(((keep.sum(1) == 0) & ~always_wrong).sum())
    report = _ProgressReport(progress, num_candidates, n, n_always_correct)
    report.pruning(pairs.n_active, int(always_wrong.sum()), pairs.num_pairs, text.shape[0])

    if pairs.n_active == 0:  # every combination gives the same accuracy: the first one wins
        best_count, best_index = n_always_correct, 0
    else:
        evaluator = _ChunkEvaluator(grid, pairs, len(free_views), int(chunk_size), sample_tile)
        best_count, best_index = _best_over_chunks(evaluator, workers, report)
        best_count += n_always_correct
    return ViewWeightSearchResult(
        weights=_selected_weights(grid, free_views, fixed, best_index, v),
        accuracy=best_count / n,
        baseline_accuracy=baseline_accuracy,
        num_candidates=num_candidates,
    )


__all__ = ["ViewWeightSearchResult", "search_view_weights", "view_logits"]
