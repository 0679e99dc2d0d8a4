"""Tests for pointclip_hf.tuning.ensemble: loading 3D-network logits and the PointCLIP + 3D ensemble."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pointclip_hf.tuning import (
    EnsembleResult,
    check_class_order,
    ensemble_logits,
    load_logits,
    search_ensemble_weight,
)


def _complementary(seed=0, n=400, k=10):
    """Two noisy sources with independent errors and very different logit scales: PointCLIP-like
    (~100 * cos, small spread) and a 3D-network-like source (large spread)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    onehot = torch.nn.functional.one_hot(labels, k).double()
    p = 100 * (0.25 + 0.02 * (1.0 * onehot + torch.randn(n, k, generator=g, dtype=torch.float64)))
    o = 8.0 * (1.0 * onehot + torch.randn(n, k, generator=g, dtype=torch.float64))
    return p, o, labels


def _acc(logits, labels):
    return float((logits.argmax(-1) == labels).double().mean())


# --------------------------------------------------------------------------------------------------
# ensemble search
# --------------------------------------------------------------------------------------------------
def test_search_beats_both_sources():
    p, o, labels = _complementary()
    res = search_ensemble_weight(p, o, labels)
    assert isinstance(res, EnsembleResult)
    assert res.pointclip_accuracy == pytest.approx(_acc(p, labels), abs=0)
    assert res.other_accuracy == pytest.approx(_acc(o, labels), abs=0)
    assert res.accuracy > max(res.pointclip_accuracy, res.other_accuracy)
    assert 0.0 < res.alpha < 1.0
    # reported accuracy is the accuracy of ensemble_logits at the chosen alpha
    assert _acc(ensemble_logits(p, o, res.alpha), labels) == pytest.approx(res.accuracy, abs=0)


def test_search_matches_loop_reference():
    p, o, labels = _complementary(seed=1, n=200, k=7)
    alphas = torch.linspace(0, 1, 21)
    for normalize in ("log_softmax", "zscore", "none"):
        accs = [_acc(ensemble_logits(p, o, float(a), normalize=normalize), labels) for a in alphas]
        best = max(accs)
        res = search_ensemble_weight(p, o, labels, alphas=alphas, normalize=normalize)
        assert res.accuracy == pytest.approx(best, abs=0)
        assert res.alpha == pytest.approx(float(alphas[accs.index(best)]), abs=0)


def test_alpha_endpoints_equal_sources():
    p, o, labels = _complementary(seed=2)
    for normalize in ("log_softmax", "zscore", "none"):
        r0 = search_ensemble_weight(p, o, labels, alphas=[0.0], normalize=normalize)
        r1 = search_ensemble_weight(p, o, labels, alphas=[1.0], normalize=normalize)
        assert r0.accuracy == pytest.approx(_acc(p, labels), abs=0)
        assert r1.accuracy == pytest.approx(_acc(o, labels), abs=0)
        assert (r0.alpha, r1.alpha) == (0.0, 1.0)


def test_tie_break_first_alpha():
    p, _, labels = _complementary(seed=3)
    res = search_ensemble_weight(p, p.clone(), labels)  # identical sources -> every alpha ties
    assert res.alpha == 0.0
    res = search_ensemble_weight(p, p.clone(), labels, alphas=[0.7, 0.2, 0.9])
    assert res.alpha == pytest.approx(0.7)


def test_ensemble_logits_formula():
    p, o, _ = _complementary(seed=4, n=5, k=4)
    out = ensemble_logits(p, o, 0.3)
    ref = 0.7 * torch.log_softmax(p, -1) + 0.3 * torch.log_softmax(o, -1)
    torch.testing.assert_close(out, ref)
    # same decision as the paper's weighted sum of raw logits
    assert torch.equal(out.argmax(-1), (0.7 * p + 0.3 * o).argmax(-1))
    z = ensemble_logits(p, o, 0.5, normalize="zscore")
    zp = (p - p.mean(-1, keepdim=True)) / p.std(-1, unbiased=False, keepdim=True)
    zo = (o - o.mean(-1, keepdim=True)) / o.std(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(z, 0.5 * zp + 0.5 * zo)
    torch.testing.assert_close(ensemble_logits(p, o, 1.0, normalize="none"), o)
    # constant rows do not produce NaN under zscore
    assert torch.isfinite(ensemble_logits(torch.ones(2, 3), torch.ones(2, 3), 0.5, normalize="zscore")).all()


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------
def test_load_logits_formats(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", logits=x, other=x[:2])
    np.savez(tmp_path / "c.npz", x)
    save_file({"logits": torch.from_numpy(x), "feat": torch.zeros(2)}, str(tmp_path / "d.safetensors"))
    save_file({"whatever": torch.from_numpy(x)}, str(tmp_path / "e.safetensors"))
    for src in (
        x,
        torch.from_numpy(x),
        str(tmp_path / "a.npy"),
        tmp_path / "b.npz",
        tmp_path / "c.npz",
        tmp_path / "d.safetensors",
        tmp_path / "e.safetensors",
        lambda: x,
        lambda: tmp_path / "a.npy",
    ):
        out = load_logits(src)
        assert out.shape == (6, 4) and out.dtype == torch.float32
        np.testing.assert_array_equal(out.numpy(), x)
    assert load_logits(np.arange(6).reshape(2, 3)).dtype == torch.float32


def test_load_logits_refuses_pickle_and_bad_input(tmp_path):
    torch.save(torch.zeros(2, 3), tmp_path / "x.pt")
    with pytest.raises(ValueError, match="pickle"):
        load_logits(tmp_path / "x.pt")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):  # numpy refuses object arrays without allow_pickle
        load_logits(tmp_path / "obj.npy")
    with pytest.raises(ValueError, match="dtype=object"):
        load_logits(np.array([[None]], dtype=object))
    save_file({"a": torch.zeros(2, 3), "b": torch.zeros(2, 3)}, str(tmp_path / "two.safetensors"))
    with pytest.raises(ValueError, match="'logits'"):
        load_logits(tmp_path / "two.safetensors")
    with pytest.raises(FileNotFoundError):
        load_logits(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        load_logits(torch.zeros(5))
    with pytest.raises(TypeError):
        load_logits(lambda: lambda: torch.zeros(2, 2))
    with pytest.raises(TypeError):
        load_logits(42)


def test_search_accepts_file_and_callable_sources(tmp_path):
    p, o, labels = _complementary(seed=5, n=100)
    np.save(tmp_path / "o.npy", o.numpy())
    ref = search_ensemble_weight(p, o, labels)
    assert search_ensemble_weight(p, tmp_path / "o.npy", labels) == ref
    assert search_ensemble_weight(lambda: p, lambda: o, labels) == ref


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
def test_class_count_mismatch_names_both_counts():
    with pytest.raises(ValueError, match="other_logits has K = 10 classes but pointclip_logits has K = 40"):
        search_ensemble_weight(torch.randn(5, 40), torch.randn(5, 10), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="K = 10 .* K = 40"):
        ensemble_logits(torch.randn(5, 40), torch.randn(5, 10), 0.5)


def test_validation_errors():
    p, o, labels = torch.randn(6, 4), torch.randn(6, 4), torch.zeros(6, dtype=torch.long)
    with pytest.raises(ValueError, match="N = 6 rows but other_logits has N = 5"):
        search_ensemble_weight(p, o[:5], labels)
    bad = o.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="other_logits contain NaN"):
        search_ensemble_weight(p, bad, labels)
    with pytest.raises(ValueError, match="pointclip_logits contain NaN"):
        ensemble_logits(bad, o, 0.5)
    with pytest.raises(ValueError, match="empty validation split"):
        search_ensemble_weight(p[:0], o[:0], labels[:0])
    with pytest.raises(ValueError, match="labels has N = 5"):
        search_ensemble_weight(p, o, labels[:5])
    with pytest.raises(ValueError, match="labels out of range"):
        search_ensemble_weight(p, o, torch.full((6,), 4))
    with pytest.raises(ValueError, match="alphas"):
        search_ensemble_weight(p, o, labels, alphas=[0.5, 1.5])
    with pytest.raises(ValueError, match="alphas"):
        search_ensemble_weight(p, o, labels, alphas=[])
    with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0, 1\]"):
        ensemble_logits(p, o, -0.1)
    with pytest.raises(ValueError, match="normalize"):
        ensemble_logits(p, o, 0.5, normalize="softmax")


def test_check_class_order():
    check_class_order(["a", "b", "c"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="index 1: expected 'bathtub' but got 'bed'"):
        check_class_order(["airplane", "bathtub", "bed"], ["airplane", "bed", "bathtub"])
    with pytest.raises(ValueError, match="expected 3 classes but got 2"):
        check_class_order(["a", "b", "c"], ["a", "b"])
    p, o, labels = torch.randn(6, 3), torch.randn(6, 3), torch.zeros(6, dtype=torch.long)
    with pytest.raises(ValueError, match="class order mismatch at index 0"):
        search_ensemble_weight(p, o, labels, class_names=["x", "y", "z"], other_class_names=["y", "x", "z"])
    with pytest.raises(ValueError, match="class_names have K = 2 but pointclip_logits has K = 3"):
        search_ensemble_weight(p, o, labels, class_names=["x", "y"], other_class_names=["x", "y"])
