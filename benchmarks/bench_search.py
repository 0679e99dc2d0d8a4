"""Benchmark of the validation post-searches in ``pointclip_hf.tuning``.

It builds synthetic "cached CLIP features" the size of ModelNet40's test split (N=2468 clouds, V=10 views,
C=512 channels, K=40 classes) and times:

1. the full exhaustive view-weight search over 4**10 = 1,048,576 combinations (PointCLIP V1 few-shot
   ``search_weights_fs``), optionally also the V2 variant with the first three views fixed at 0.75 (4**7);
2. optionally (``--naive``) the plain matmul formulation ``W[M,V] @ L[V, N*K]`` followed by argmax, on a
   sample of combinations, extrapolated to 4**10 for comparison;
3. the greedy prompt search with 40 classes x 100 candidate sentences, 2 passes.

Usage::

    python benchmarks/bench_search.py                 # full 4**10 + prompt search
    python benchmarks/bench_search.py --workers 1     # single worker thread
    python benchmarks/bench_search.py --no-prune --v2 --naive

The synthetic features are CLIP-like: the text embeddings share a common direction (pairwise cosine about
0.6), the image-text cosines are about 0.2-0.3, and the views decrease in informativeness. The exact
pruning in the search depends on the data, so ``--no-prune`` gives the data-independent worst case.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointclip_hf.tuning import search_prompts, search_view_weights, view_logits  # noqa: E402


def make_features(n=2468, v=10, c=512, k=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(c, generator=g)
    text = torch.nn.functional.normalize(common + 0.8 * torch.randn(k, c, generator=g), dim=-1)
    labels = torch.randint(0, k, (n,), generator=g)
    informativeness = torch.linspace(1.0, 0.4, v)
    confuser = torch.randint(0, k, (n, v), generator=g)
    feats = (
        0.5 * common
        + 3.0 * informativeness[None, :, None] * text[labels][:, None, :]
        + text[confuser]
        + 2.0 * torch.randn(n, v, c, generator=g)
    )
    return torch.nn.functional.normalize(feats, dim=-1), text, labels


def make_prompt_library(text, sentences=100, seed=1):
    """Per class, ``sentences`` candidate embeddings scattered around the class embedding."""
    g = torch.Generator().manual_seed(seed)
    k, c = text.shape
    spread = torch.rand(k, sentences, 1, generator=g) * 0.25
    cands = text[:, None, :] + spread * torch.randn(k, sentences, c, generator=g) / c**0.5 * 4
    return [torch.nn.functional.normalize(x, dim=-1) for x in cands]


def bench_naive(features, text, labels, sample=4096, chunk=256):
    """Plain formulation: logits = W @ L.reshape(V, N*K), argmax over K, count."""
    lv = view_logits(features, text).permute(1, 0, 2).contiguous()  # [V, N, K] float32
    v, n, k = lv.shape
    flat = lv.reshape(v, n * k)
    grid = torch.tensor([0.25, 0.5, 0.75, 1.0])
    idx = torch.arange(sample)
    digits = (idx[:, None] // (4 ** torch.arange(v - 1, -1, -1))[None, :]) % 4
    w = grid[digits]
    t0, c0 = time.perf_counter(), time.process_time()
    for m0 in range(0, sample, chunk):
        logits = (w[m0 : m0 + chunk] @ flat).view(-1, n, k)
        (logits.argmax(-1) == labels[None]).sum(-1)
    return time.perf_counter() - t0, time.process_time() - c0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=None, help="worker threads (default: torch.get_num_threads())")
    ap.add_argument("--chunk-size", type=int, default=2048)
    ap.add_argument("--no-prune", action="store_true", help="disable the exact pruning (worst case)")
    ap.add_argument("--v2", action="store_true", help="also time V2's search (views 0-2 fixed at 0.75, 4**7)")
    ap.add_argument("--naive", action="store_true", help="also time the plain matmul+argmax formulation")
    ap.add_argument("--skip-full", action="store_true", help="skip the full 4**10 search")
    ap.add_argument("--skip-prompts", action="store_true")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()

    features, text, labels = make_features()
    n, v, c = features.shape
    print(
        f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"synthetic features N={n} V={v} C={c} K={text.shape[0]}")
    print("(this machine may be shared: 'CPU' is this process's CPU time, less sensitive to other load)")
    kw = dict(chunk_size=args.chunk_size, workers=args.workers, prune=not args.no_prune, progress=args.progress)

    if not args.skip_full:
        t0, c0 = time.perf_counter(), time.process_time()
        res = search_view_weights(features, text, labels, **kw)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"[view weights 4^10] {res.num_candidates:,} combinations in {dt:.2f} s wall / {dc:.2f} s CPU "
            f"({res.num_candidates / dt:,.0f} comb/s); best {res.weights} acc {res.accuracy:.4f} "
            f"(equal weights {res.baseline_accuracy:.4f}); prune={not args.no_prune}"
        )

    if args.v2:
        t0, c0 = time.perf_counter(), time.process_time()
        res = search_view_weights(features, text, labels, fixed={0: 0.75, 1: 0.75, 2: 0.75}, **kw)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"[view weights V2 4^7] {res.num_candidates:,} combinations in {dt:.2f} s wall / {dc:.2f} s CPU "
            f"({res.num_candidates / dt:,.0f} comb/s); best {res.weights} acc {res.accuracy:.4f}"
        )

    if args.naive:
        sample = 4096
        dt, dc = bench_naive(features, text, labels, sample=sample)
        print(
            f"[naive matmul+argmax] {sample} combinations in {dt:.2f} s wall / {dc:.2f} s CPU "
            f"({sample / dt:,.0f} comb/s) -> 4^10 extrapolated {dt * 4**10 / sample:.0f} s wall"
        )

    if not args.skip_prompts:
        lib = make_prompt_library(text)
        names = [f"class_{i}" for i in range(text.shape[0])]
        w = torch.tensor([0.75, 0.75, 0.75, 0.25, 0.5, 1.0, 0.75, 0.25, 0.25, 0.25])
        t0, c0 = time.perf_counter(), time.process_time()
        res = search_prompts(features, lib, names, labels, view_weights=w, passes=2)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        changed = sum(1 for j in res.indices.values() if j != 0)
        print(
            f"[prompts 40x100, 2 passes] {dt:.2f} s wall / {dc:.2f} s CPU; "
            f"acc {res.baseline_accuracy:.4f} -> {res.accuracy:.4f} ({changed} classes changed)"
        )


if __name__ == "__main__":
    main()
