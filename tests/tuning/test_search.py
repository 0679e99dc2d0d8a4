"""Tests for pointclip_hf.tuning's searches: exhaustive view-weight search and greedy prompt search."""

import itertools

import pytest
import torch

from pointclip_hf.tuning import (
    PromptSearchResult,
    ViewWeightSearchResult,
    search_prompts,
    search_view_weights,
    view_logits,
)

GRID = (0.25, 0.5, 0.75, 1.0)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _onehot_text(k: int) -> torch.Tensor:
    """Text embeddings = identity, so that view_logits(features, text) == features (C = K)."""
    return torch.eye(k, dtype=torch.float64)


def _brute_force(features, text, labels, grid, fixed=None):
    """Naive reference: loop over every combination, argmax of the weighted logits, strict '>' keeps the
    first (lexicographic) maximum."""
    logits_v = view_logits(features.double(), text.double())
    v = logits_v.shape[1]
    fixed = fixed or {}
    free = [i for i in range(v) if i not in fixed]
    best, best_w = -1, None
    for combo in itertools.product(grid, repeat=len(free)):
        w = torch.zeros(v, dtype=torch.float64)
        for i, x in zip(free, combo):
            w[i] = x
        for i, x in fixed.items():
            w[i] = x
        correct = int(((logits_v * w[None, :, None]).sum(1).argmax(-1) == labels).sum())
        if correct > best:
            best, best_w = correct, w.tolist()
    return best_w, best / labels.numel()


def _random_problem(seed, n=60, v=3, c=12, k=5):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(k, c, generator=g)
    labels = torch.randint(0, k, (n,), generator=g)
    strength = torch.rand(v, generator=g) * 2
    feats = strength[None, :, None] * torch.nn.functional.normalize(text, dim=-1)[labels][:, None, :]
    feats = feats + torch.randn(n, v, c, generator=g)
    return torch.nn.functional.normalize(feats, dim=-1), text, labels


# --------------------------------------------------------------------------------------------------
# view_logits
# --------------------------------------------------------------------------------------------------
def test_view_logits_matches_cosine():
    feats, text, _ = _random_problem(0, n=7, v=3, c=6, k=4)
    out = view_logits(feats, text)
    assert out.shape == (7, 3, 4)
    assert out.dtype == torch.float32
    ref = torch.einsum("nvc,kc->nvk", feats.double(), torch.nn.functional.normalize(text.double(), dim=-1))
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-6)
    # per-view normalised features -> cosines in [-1, 1]
    assert out.abs().max() <= 1 + 1e-6
    # the weighted sum with scale / sqrt(V) is the PointCLIP formula
    w = torch.tensor([0.25, 1.0, 0.5])
    logits = 100 / 3**0.5 * (out * w[None, :, None]).sum(1)
    direct = (
        100
        * (feats * w[None, :, None]).reshape(7, -1)
        @ (torch.nn.functional.normalize(text, dim=-1).repeat(1, 3) / 3**0.5).T
    )
    torch.testing.assert_close(logits, direct, rtol=1e-4, atol=1e-4)


def test_view_logits_errors():
    with pytest.raises(ValueError, match="channel mismatch"):
        view_logits(torch.randn(2, 3, 4), torch.randn(5, 6))
    with pytest.raises(ValueError, match=r"\[N, V, C\]"):
        view_logits(torch.randn(2, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="zero norm"):
        view_logits(torch.randn(2, 3, 4), torch.zeros(5, 4))


# --------------------------------------------------------------------------------------------------
# search_view_weights: correctness
# --------------------------------------------------------------------------------------------------
def test_known_optimum_informative_views():
    """Views 0 and 1 carry the label, views 2 and 3 are pure (louder) noise: the optimum is the largest
    weight on the informative views and the smallest on the noise views."""
    g = torch.Generator().manual_seed(3)
    n, k = 600, 6
    labels = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, 4, k, generator=g)
    logits[:, 0:2] += 1.5 * torch.nn.functional.one_hot(labels, k)[:, None, :]
    logits[:, 2:4] *= 2.0
    text = _onehot_text(k)
    res = search_view_weights(logits, text, labels, grid=GRID)
    assert isinstance(res, ViewWeightSearchResult)
    assert res.weights == [1.0, 1.0, 0.25, 0.25]
    bw, bacc = _brute_force(logits, text, labels, GRID)
    assert res.weights == bw
    assert res.accuracy == pytest.approx(bacc, abs=0)
    assert res.accuracy > res.baseline_accuracy
    assert res.num_candidates == 4**4


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force(seed):
    feats, text, labels = _random_problem(seed, n=80, v=3, c=10, k=5)
    grid = GRID if seed % 2 == 0 else (1.0, 0.0, 0.5)  # unsorted grid, and one containing 0
    bw, bacc = _brute_force(feats, text, labels, grid)
    for kwargs in (
        {},
        {"prune": False},
        {"chunk_size": 1, "workers": 1},
        {"chunk_size": 5, "workers": 2, "sample_tile": 7},
    ):
        res = search_view_weights(feats, text, labels, grid=grid, **kwargs)
        assert res.weights == bw, kwargs
        assert res.accuracy == pytest.approx(bacc, abs=0), kwargs
        assert res.num_candidates == len(grid) ** 3


def test_accuracy_equals_direct_evaluation_larger():
    """Larger V: the reported accuracy is the direct argmax accuracy of the returned weights, and the
    baseline is the accuracy of the unweighted features."""
    feats, text, labels = _random_problem(11, n=150, v=6, c=16, k=8)
    threads = torch.get_num_threads()
    res = search_view_weights(feats, text, labels, chunk_size=64)
    assert torch.get_num_threads() == threads  # the intra-op thread count is restored
    lv = view_logits(feats.double(), text.double())
    w = torch.tensor(res.weights, dtype=torch.float64)
    direct = float(((lv * w[None, :, None]).sum(1).argmax(-1) == labels).double().mean())
    assert res.accuracy == pytest.approx(direct, abs=0)
    base = float((lv.sum(1).argmax(-1) == labels).double().mean())
    assert res.baseline_accuracy == pytest.approx(base, abs=0)
    assert res.accuracy >= res.baseline_accuracy
    assert res.num_candidates == 4**6
    # chunking / pruning / threading never change the answer
    for kwargs in ({"prune": False, "chunk_size": 4096}, {"workers": 2, "chunk_size": 16}):
        other = search_view_weights(feats, text, labels, **kwargs)
        assert (other.weights, other.accuracy) == (res.weights, res.accuracy)


def test_fixed_views_are_honoured():
    feats, text, labels = _random_problem(5, n=70, v=4, c=10, k=5)
    fixed = {0: 0.75, 2: 0.3}  # 0.3 need not be on the grid
    res = search_view_weights(feats, text, labels, fixed=fixed)
    assert res.weights[0] == 0.75 and res.weights[2] == 0.3
    assert res.num_candidates == 4**2
    bw, bacc = _brute_force(feats, text, labels, GRID, fixed)
    assert res.weights == bw
    assert res.accuracy == pytest.approx(bacc, abs=0)


def test_all_views_fixed_single_candidate():
    feats, text, labels = _random_problem(6, n=30, v=3, c=8, k=4)
    res = search_view_weights(feats, text, labels, fixed={0: 1.0, 1: 0.5, 2: 0.25})
    assert res.num_candidates == 1
    assert res.weights == [1.0, 0.5, 0.25]
    _, bacc = _brute_force(feats, text, labels, GRID, {0: 1.0, 1: 0.5, 2: 0.25})
    assert res.accuracy == pytest.approx(bacc, abs=0)


def test_tie_break_first_combination_in_grid_order():
    """Every combination is equally good (all clouds trivially correct): the first combination in
    lexicographic grid order must be returned, for any chunking."""
    n, k = 20, 3
    labels = torch.arange(n) % k
    logits = 5 * torch.nn.functional.one_hot(labels, k)[:, None, :].repeat(1, 3, 1).double()
    text = _onehot_text(k)
    for kwargs in ({}, {"chunk_size": 1}, {"prune": False, "chunk_size": 7, "workers": 2}):
        res = search_view_weights(logits, text, labels, **kwargs)
        assert res.weights == [0.25, 0.25, 0.25]
        assert res.accuracy == 1.0
        res = search_view_weights(logits, text, labels, grid=(1.0, 0.5), **kwargs)
        assert res.weights == [1.0, 1.0, 1.0]


def test_tie_break_between_several_optima():
    """Several combinations are optimal; the lexicographically first one wins.

    Text = identity, so the view logits are the given numbers. Cloud 0 (label 1) is correct iff
    w1 > w0 (class 0 wins exact ties), cloud 1 (label 1) iff w2 > 0, cloud 2 (label 0) unless all
    weights are 0. With grid (0, 0.5, 1) the first optimum in grid order is (0, 0.5, 0.5)."""
    labels = torch.tensor([1, 1, 0])
    logits = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]],  # correct iff w1 > w0
            [[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]],  # correct iff w2 > 0
            [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]],  # always correct unless all weights are 0
        ],
        dtype=torch.float64,
    )
    text = _onehot_text(2)
    grid = (0.0, 0.5, 1.0)
    res = search_view_weights(logits, text, labels, grid=grid)
    bw, bacc = _brute_force(logits, text, labels, grid)
    assert res.weights == bw == [0.0, 0.5, 0.5]
    assert res.accuracy == bacc == 1.0


def test_exact_class_ties_follow_argmax():
    """Duplicate class embeddings give exact logit ties; like torch.argmax the lower class index wins."""
    feats, text, labels = _random_problem(8, n=60, v=3, c=10, k=5)
    text = text.clone()
    text[3] = text[1]  # classes 1 and 3 tie exactly for every cloud and every weight
    labels = labels.clone()
    labels[:10] = 3  # these can never be predicted (class 1 wins the tie)
    labels[10:20] = 1
    for grid in (GRID, (0.0, 1.0)):  # with 0 on the grid, the all-zero combination ties every class
        bw, bacc = _brute_force(feats, text, labels, grid)
        for prune in (True, False):
            res = search_view_weights(feats, text, labels, grid=grid, prune=prune)
            assert res.weights == bw
            assert res.accuracy == pytest.approx(bacc, abs=0)


def test_labels_n_by_1_and_progress(capsys):
    feats, text, labels = _random_problem(9, n=40, v=3, c=8, k=4)
    res = search_view_weights(feats, text, labels[:, None], progress=True)
    assert res == search_view_weights(feats, text, labels)
    assert "search_view_weights" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# search_view_weights: validation
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labels": torch.zeros(9, dtype=torch.long)}, "have N = 10 rows but labels has N = 9"),
        ({"text_embeds": torch.randn(4, 7)}, "channel mismatch"),
        ({"labels": torch.full((10,), 4)}, "labels out of range"),
        ({"labels": torch.full((10,), -1)}, "labels out of range"),
        ({"labels": torch.zeros(10)}, "integer"),
        ({"grid": ()}, "empty grid"),
        ({"grid": (0.5, -0.25)}, "non-negative"),
        ({"grid": (0.5, 0.5)}, "distinct"),
        ({"fixed": {3: 0.5}}, "fixed view index 3 out of range"),
        ({"fixed": {-1: 0.5}}, "fixed view index -1 out of range"),
        ({"fixed": {0: -1.0}}, "fixed weight for view 0 must be a finite number >= 0"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"workers": 0}, "workers"),
    ],
)
def test_view_search_errors(kwargs, match):
    args = {
        "features": torch.randn(10, 3, 8),
        "text_embeds": torch.randn(4, 8),
        "labels": torch.zeros(10, dtype=torch.long),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        search_view_weights(**args)


def test_view_search_empty_split():
    with pytest.raises(ValueError, match="empty validation split"):
        search_view_weights(torch.randn(0, 3, 8), torch.randn(4, 8), torch.zeros(0, dtype=torch.long))


def test_view_search_nan_features():
    f = torch.randn(5, 3, 8)
    f[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        search_view_weights(f, torch.randn(4, 8), torch.zeros(5, dtype=torch.long))


# --------------------------------------------------------------------------------------------------
# search_prompts
# --------------------------------------------------------------------------------------------------
def _naive_prompt_search(features, cands, labels, weights, initial, passes):
    """Literal transcription of the reference greedy loop: try each sentence, full re-evaluation,
    keep on strict improvement."""
    pooled = torch.einsum("nvc,v->nc", features.double(), weights.double())
    cands = [torch.nn.functional.normalize(c.double(), dim=-1) for c in cands]
    cur = list(initial)

    def acc(sel):
        text = torch.stack([cands[i][j] for i, j in enumerate(sel)])
        return int(((pooled @ text.T).argmax(1) == labels).sum())

    base = best = acc(cur)
    for _ in range(passes):
        for ci in range(len(cands)):
            for j in range(cands[ci].shape[0]):
                trial = list(cur)
                trial[ci] = j
                a = acc(trial)
                if a > best:
                    best, cur = a, trial
    return cur, best, base


def _prompt_problem(seed, n=60, v=2, c=8, k=4, max_s=6):
    g = torch.Generator().manual_seed(seed)
    feats = torch.nn.functional.normalize(torch.randn(n, v, c, generator=g), dim=-1)
    labels = torch.randint(0, k, (n,), generator=g)
    sizes = torch.randint(1, max_s + 1, (k,), generator=g).tolist()
    cands = [torch.randn(s, c, generator=g) for s in sizes]
    # make some candidates informative so that the search has something to find
    proto = torch.stack([feats[labels == i].sum((0, 1)) if (labels == i).any() else torch.randn(c) for i in range(k)])
    for i, s in enumerate(sizes):
        mix = torch.rand(s, 1, generator=g)
        cands[i] = mix * torch.nn.functional.normalize(proto[i], dim=0) + (1 - mix) * cands[i]
    names = [f"class{i}" for i in range(k)]
    return feats, cands, labels, names


@pytest.mark.parametrize("seed", range(8))
def test_prompt_search_matches_naive(seed):
    feats, cands, labels, names = _prompt_problem(seed)
    g = torch.Generator().manual_seed(100 + seed)
    weights = torch.rand(2, generator=g) if seed % 2 else None
    w = weights if weights is not None else torch.ones(2)
    passes = 1 + seed % 3
    initial = {names[1]: cands[1].shape[0] - 1} if seed % 4 == 3 else None
    init_list = [0] * len(names)
    if initial:
        init_list[1] = cands[1].shape[0] - 1
    ref_sel, ref_best, ref_base = _naive_prompt_search(feats, cands, labels, w, init_list, passes)
    res = search_prompts(feats, cands, names, labels, view_weights=weights, initial=initial, passes=passes)
    assert isinstance(res, PromptSearchResult)
    assert [res.indices[nm] for nm in names] == ref_sel
    assert res.accuracy == pytest.approx(ref_best / len(labels), abs=0)
    assert res.baseline_accuracy == pytest.approx(ref_base / len(labels), abs=0)
    assert res.accuracy >= res.baseline_accuracy


def test_prompt_search_improves_and_reports_sentences():
    feats, cands, labels, names = _prompt_problem(42, n=120, k=5, max_s=8)
    # put a deliberately bad sentence first for every class
    cands = [torch.cat([-c[:1], c]) for c in cands]
    sentences = {nm: [f"{nm} bad"] + [f"{nm} s{j}" for j in range(c.shape[0] - 1)] for nm, c in zip(names, cands)}
    res = search_prompts(feats, dict(zip(names, cands)), names, labels, sentences=sentences)
    assert res.accuracy > res.baseline_accuracy
    for nm in names:
        assert res.prompts[nm] == sentences[nm][res.indices[nm]]
    # dict and list inputs agree; without sentences the placeholder is "#j"
    res_list = search_prompts(feats, cands, names, labels)
    assert res_list.indices == res.indices and res_list.accuracy == res.accuracy
    assert res_list.prompts == {nm: f"#{j}" for nm, j in res.indices.items()}
    # zero passes: nothing changes
    res0 = search_prompts(feats, cands, names, labels, passes=0)
    assert res0.accuracy == res0.baseline_accuracy == res.baseline_accuracy
    assert set(res0.indices.values()) == {0}


def test_prompt_search_errors():
    feats, cands, labels, names = _prompt_problem(1)
    with pytest.raises(ValueError, match="no entry for class"):
        search_prompts(feats, dict(zip(names[:-1], cands[:-1])), names, labels)
    with pytest.raises(ValueError, match="channel mismatch"):
        search_prompts(feats, [c[:, :5] for c in cands], names, labels)
    with pytest.raises(ValueError, match="has 3 entries but there are 4"):
        search_prompts(feats, cands[:3], names, labels)
    with pytest.raises(ValueError, match="out of range"):
        search_prompts(feats, cands, names, labels, initial={names[0]: 99})
    with pytest.raises(ValueError, match="unknown class"):
        search_prompts(feats, cands, names, labels, initial={"nope": 0})
    with pytest.raises(ValueError, match="labels out of range"):
        search_prompts(feats, cands, names, torch.full_like(labels, 4))
    with pytest.raises(ValueError, match="have N = 60 rows but labels has N = 59"):
        search_prompts(feats, cands, names, labels[:-1])
    with pytest.raises(ValueError, match="empty validation split"):
        search_prompts(feats[:0], cands, names, labels[:0])
    with pytest.raises(ValueError, match="view_weights"):
        search_prompts(feats, cands, names, labels, view_weights=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="no candidate sentences"):
        search_prompts(feats, [cands[0][:0]] + cands[1:], names, labels)
    with pytest.raises(ValueError, match="sentences"):
        search_prompts(feats, cands, names, labels, sentences=[["a"]] * 4)
