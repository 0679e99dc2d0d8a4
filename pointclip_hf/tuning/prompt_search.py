"""Greedy per-class prompt selection on cached validation features (PointCLIP V2 ``search_prompt_zs`` in the official
``zeroshot_cls/trainers/post_search.py``).

Each class starts from sentence 0, or from ``initial[class]``. Then, for each of ``passes`` passes and for each class
``c`` in ``class_names`` order, the candidates ``j = 0..S_c-1`` are tried in turn: class c's text embedding is
replaced by candidate j, and the replacement is kept only if the validation accuracy **strictly** improves. Only
column c of the logits depends on the candidate, so every candidate of class c is scored at once
(`_PromptScores.candidate_counts`). Doing the candidates one by one, and keeping a strict improvement each time,
selects the **first** candidate with the highest accuracy, provided that accuracy beats the current one; the
vectorised search does exactly that. A pass that changes nothing ends the search early, because any further pass
would change nothing either.

Scores are ``sum_v w_v <f[n, v], t_c>`` in float64, with the candidate embeddings L2-normalised. ``scale`` is dropped
(it does not change the argmax). Ties between classes: the lowest class index wins.
"""

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..argument_checks import check_counts
from ..model.processing_pointclip import processor_for_model
from ..model.prompts import check_class_prompts, check_labels
from ._checks import as_tensor, check_features, check_label_ids, check_tensor, check_view_weights, normalize_text

# Candidate scores of all classes are computed once and kept when they fit in this many bytes.
_CACHE_BYTES = 512 << 20


@dataclass
class PromptSearchResult:
    """
    Result of `search_prompts`.

    Args:
        prompts (`dict[str, str]`):
            The chosen sentence per class name; the placeholder `"#<index>"` when no `sentences` were given.
        accuracy (`float`):
            Validation top-1 accuracy with the chosen prompts.
        baseline_accuracy (`float`):
            Validation top-1 accuracy with the initial prompts (sentence 0, or `initial`).
        indices (`dict[str, int]`):
            The chosen sentence index per class name.
    """

    prompts: dict[str, str]
    accuracy: float
    baseline_accuracy: float
    indices: dict[str, int]


def _per_class_list(obj, class_names: list[str], what: str) -> list:
    if isinstance(obj, Mapping):
        missing = [c for c in class_names if c not in obj]
        extra = [c for c in obj if c not in set(class_names)]
        problem = f"no entry for class(es) {missing[:5]}" if missing else f"entries for unknown class(es) {extra[:5]}"
        items, fits = [obj.get(c) for c in class_names], not missing and not extra
    else:
        items = list(obj)
        problem = f"{len(items)} entries but there are {len(class_names)} class_names"
        fits = len(items) == len(class_names)
    if not fits:
        raise ValueError(f"{what} has {problem}")
    return items


def _candidate_embeddings(prompt_embeds, class_names: list[str], c: int) -> list[Tensor]:
    """The normalised float64 candidates `(S_c, C)` of every class, checked."""
    cands = []
    for name, emb in zip(class_names, _per_class_list(prompt_embeds, class_names, "prompt_embeds")):
        what = f"prompt_embeds[{name!r}]"
        emb = as_tensor(emb, what)
        emb = check_tensor(emb[None] if emb.ndim == 1 else emb, what, "SC", dtype="real", sizes={"C": (c, "features")})
        cands.append(normalize_text(emb, what))
    return cands


def _sentence_texts(sentences, class_names: list[str], sizes: list[int]) -> list[list[str]] | None:
    if sentences is None:
        return None
    texts = [list(s) for s in _per_class_list(sentences, class_names, "sentences")]
    for name, s, size in zip(class_names, texts, sizes):
        if len(s) != size:
            raise ValueError(f"sentences[{name!r}] has {len(s)} entries but prompt_embeds has {size}")
    return texts


def _initial_indices(initial, class_names: list[str], sizes: list[int]) -> list[int]:
    current = [0] * len(class_names)
    for name, j in (initial or {}).items():
        ci = class_names.index(name) if name in class_names else None
        if ci is None or isinstance(j, bool) or int(j) != j or not 0 <= int(j) < sizes[ci]:
            problem = "names an unknown class" if ci is None else f"is out of range for {sizes[ci]} sentences"
            raise ValueError(f"initial[{name!r}] = {j!r} {problem}")
        current[ci] = int(j)
    return current


class _PromptScores:
    """
    The scores `(N, K)` of the current prompts and the candidate scores `(N, S_c)` of each class, float64. The
    candidate scores are cached when small, otherwise recomputed per visit; the current scores are taken from these
    same numbers, so the per-candidate and full scores agree bit for bit.
    """

    def __init__(self, pooled: Tensor, cands: list[Tensor], current: list[int], labels: Tensor):
        self.pooled, self.cands, self.labels = pooled, cands, labels
        n, k = pooled.shape[0], len(cands)
        sizes = [e.shape[0] for e in cands]
        self.cache: list[Tensor | None] = [None] * k
        if sum(sizes) * n * 8 <= _CACHE_BYTES:  # one matmul for all candidates, with the caller's thread count
            self.cache = list(torch.split(pooled @ torch.cat(cands).T, sizes, dim=1))
        self.scores = torch.empty(n, k, dtype=torch.float64)
        for ci in range(k):
            self.scores[:, ci] = self.candidate_scores(ci)[:, current[ci]]

    def candidate_scores(self, ci: int) -> Tensor:
        cached = self.cache[ci]
        return cached if cached is not None else self.pooled @ self.cands[ci].T

    def num_correct(self) -> int:
        return int((self.scores.argmax(dim=1) == self.labels).sum())

    def candidate_counts(self, ci: int, cs: Tensor) -> Tensor:
        """
        Number of correct clouds for every candidate column of class `ci`. Cloud n is correct iff
        `tl[n] <= cs[n, j] <= th[n]`:

        * label ci: the candidate must be > max_{k<ci} s_k and >= max_{k>ci} s_k, so
          `tl = max(upper, nextafter(lower, +inf))` and `th = +inf`;
        * label y != ci: y must beat every k not in {ci, y} (`base_ok`), and the candidate must stay below s_y,
          strictly if ci < y. So `th = s_y` (or `nextafter(s_y, -inf)`), `tl = -inf`, and `th = -inf` when
          `base_ok` fails.

        Args:
            ci (`int`):
                The class whose candidates are scored.
            cs (`torch.Tensor` of shape `(N, S)`):
                Its candidate scores.

        Returns:
            `torch.Tensor` of shape `(S,)`: the correct-cloud count of each candidate.
        """
        scores, labels = self.scores, self.labels
        n, k = scores.shape
        inf = torch.tensor(float("inf"), dtype=torch.float64)
        lower = scores[:, :ci].amax(dim=1) if ci > 0 else torch.full((n,), -inf)
        upper = scores[:, ci + 1 :].amax(dim=1) if ci < k - 1 else torch.full((n,), -inf)
        is_c = labels == ci
        s_wo = scores.clone()
        s_wo[:, ci] = -inf
        base_ok = s_wo.argmax(dim=1) == labels
        s_y = scores[torch.arange(n), labels]
        th = torch.where(labels > ci, torch.nextafter(s_y, -inf), s_y)
        th = torch.where(base_ok, th, -inf)
        th = torch.where(is_c, inf, th)
        tl = torch.where(is_c, torch.maximum(upper, torch.nextafter(lower, inf)), -inf)
        return ((cs >= tl[:, None]) & (cs <= th[:, None])).sum(0)


def _greedy_passes(state: _PromptScores, current: list[int], passes: int, progress: bool) -> int:
    """Run the greedy passes, updating `current` and `state.scores`; returns the final number of correct clouds."""
    n, k = state.scores.shape
    cur_correct = state.num_correct()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: avoid OpenMP barrier overhead
    try:
        for p in range(passes):
            changed = 0
            for ci in range(k):
                cs = state.candidate_scores(ci)
                per_cand = state.candidate_counts(ci, cs)
                best = int(per_cand.max())
                if best > cur_correct:  # strict improvement; first candidate with the best count
                    j = int((per_cand == best).nonzero()[0])
                    current[ci] = j
                    state.scores[:, ci] = cs[:, j]
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
    return cur_correct


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
    """
    Greedy per-class prompt selection on validation labels (see the module docstring for the exact rule).

    Args:
        features (`torch.Tensor` of shape `(N, V, C)`):
            Cached validation features (as in `view_logits`).
        prompt_embeds (`Mapping[str, torch.Tensor]` or `Sequence[torch.Tensor]`):
            Per class, the `(S_c, C)` candidate sentence embeddings; a dict keyed by class name or a sequence aligned
            with `class_names`.
        class_names (`Sequence[str]`):
            The K class names, in label order.
        labels (`torch.Tensor` of shape `(N,)`):
            Integer labels.
        view_weights (`torch.Tensor` or `Sequence[float]` of length `V`, *optional*):
            Non-negative view weights; `None` means equal weights.
        initial (`Mapping[str, int]`, *optional*):
            Starting sentence index per class name; missing classes start at 0.
        passes (`int`, *optional*, defaults to 2):
            Number of greedy passes (2 in the reference).
        progress (`bool`, *optional*, defaults to `False`):
            Print one line per pass to stderr.
        sentences (`Mapping[str, Sequence[str]]` or `Sequence[Sequence[str]]`, *optional*):
            Sentence texts aligned with `prompt_embeds`, used to fill `prompts`.

    Returns:
        [`PromptSearchResult`].
    """
    features = check_features(features)
    n, v, c = features.shape
    class_names = check_labels(list(class_names))
    labels = check_label_ids(labels, n, len(class_names))
    check_counts({"passes": passes}, minimum=0)
    cands = _candidate_embeddings(prompt_embeds, class_names, c)
    sizes = [e.shape[0] for e in cands]
    texts = _sentence_texts(sentences, class_names, sizes)
    current = _initial_indices(initial, class_names, sizes)
    weights = torch.ones(v, dtype=torch.float64) if view_weights is None else check_view_weights(view_weights, v)

    pooled = torch.einsum("nvc,v->nc", features.to(torch.float64), weights)
    state = _PromptScores(pooled, cands, current, labels)
    baseline_correct = state.num_correct()
    final_correct = _greedy_passes(state, current, passes, progress)
    return PromptSearchResult(
        prompts={
            name: (texts[i][current[i]] if texts is not None else f"#{current[i]}")
            for i, name in enumerate(class_names)
        },
        accuracy=final_correct / n,
        baseline_accuracy=baseline_correct / n,
        indices={name: current[i] for i, name in enumerate(class_names)},
    )


@torch.no_grad()
def encode_class_prompts(
    model, library: Mapping[str, Sequence[str]], class_names: Sequence[str], batch_size: int = 256
) -> dict[str, Tensor]:
    """
    Normalised CLIP text embeddings of every sentence of a prompt library, the candidates of `search_prompts`.

    Args:
        model ([`PointCLIPModel`]):
            Tokenises and encodes the sentences.
        library (`Mapping[str, Sequence[str]]`):
            `{class: [sentence, ...]}`, with an entry for every class.
        class_names (`Sequence[str]`):
            The classes to encode.
        batch_size (`int`, *optional*, defaults to 256):
            Sentences encoded at a time.

    Returns:
        `dict[str, torch.Tensor]`: per class, the `(S_c, C)` embeddings, float32, on the CPU.
    """
    check_class_prompts(library, class_names)
    processor = processor_for_model(model)
    max_length = model.config.clip_config.text_config.max_position_embeddings
    embeds = {}
    for name in class_names:
        chunks = []
        for start in range(0, len(library[name]), batch_size):
            sentences = library[name][start : start + batch_size]
            tokens = processor.tokenize(sentences, max_length=max_length, device=model.device)
            chunks.append(model.get_text_features(**tokens).float().cpu())
        embeds[name] = torch.cat(chunks)
    return embeds


__all__ = ["PromptSearchResult", "encode_class_prompts", "search_prompts"]
