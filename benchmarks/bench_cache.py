"""Benchmark of the cache heads: zero-shot, the Tip-Adapter cache (1, 4, 16 shots), Tip-Adapter-F and the test-time
cache (TDA), their accuracy, the time to build a cache and the per-cloud cost of the cache head.

Without real CLIP weights or datasets (the default) it runs on synthetic but structured shapes: ten procedural classes
(cube, cylinder, cone, torus, sphere, pyramid, chair and table made of boxes, lamp, bottle), each drawn with a random
pose (a turn about the up axis and a small tilt), a random anisotropic scale, noise and, for 30 % of the clouds, a
partial view (the points beyond a random plane removed). The model is a small CLIP with random weights built here:
its zero-shot accuracy is chance (random text and image towers), and what the cache adds comes from the shape
information that the random image tower keeps. The numbers say that the code paths work and what they cost; they say
nothing about real CLIP weights.

With real weights and data (the README's command)::

    python benchmarks/bench_cache.py --dataset modelnet40 --model openai/clip-vit-base-patch16 --projection pointclip_v2

Protocol: the validation split is carved from the training split (`train_validation_split`, 20 % of every class,
seed 0); the K-shot support sets are drawn from the rest (`few_shot_subset`, seeds 0, 1, 2); alpha and beta are
searched on the validation split only (Tip-Adapter's grid); the test split is read once, at the end, for accuracy. The
test-time cache sees the test clouds in a fixed shuffled order (seed 0), as TDA's loader shuffles them.

Usage::

    python benchmarks/bench_cache.py                    # synthetic shapes, random small CLIP: ~1 min, 2 quiet cores
    python benchmarks/bench_cache.py --overhead-arch vit-b16   # the head's cost next to a full-size ViT-B/16 tower
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor  # noqa: E402
from pointclip_hf.data import (  # noqa: E402
    few_shot_subset,
    load_point_cloud_dataset,
    point_features,
    train_validation_split,
)
from pointclip_hf.encoding import encode_split, prepare_split  # noqa: E402
from pointclip_hf.model.inter_view_adapter import fused_features  # noqa: E402
from pointclip_hf.model.pipeline_pointclip import label_embeddings  # noqa: E402
from pointclip_hf.model.processing_pointclip import processor_for_model  # noqa: E402
from pointclip_hf.test_time_cache import TestTimeCache  # noqa: E402
from pointclip_hf.testing_utils import byte_level_vocab  # noqa: E402
from pointclip_hf.training import TrainingConfig, train_adapter  # noqa: E402
from pointclip_hf.tuning import search_cache_weights  # noqa: E402
from pointclip_hf.tuning.cache_search import cache_search_grid  # noqa: E402

SHAPES = ("cube", "cylinder", "cone", "torus", "sphere", "pyramid", "chair", "table", "lamp", "bottle")


# ---------------------------------------------------------------------------------------------------- shapes


def _box(rng, n, center, size):
    """`n` points on the surface of an axis-aligned box, faces chosen by area."""
    size = np.asarray(size, dtype=np.float64)
    areas = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]] * 2)
    face = rng.choice(6, n, p=areas / areas.sum())
    points = rng.uniform(-0.5, 0.5, (n, 3))
    axis = face % 3
    points[np.arange(n), axis] = np.where(face < 3, -0.5, 0.5)
    return points * size + center


def _cylinder(rng, n, center, radius, height, top_radius=None):
    """A (possibly conical) tube with its caps: radius at the bottom, `top_radius` at the top."""
    top_radius = radius if top_radius is None else top_radius
    side = math.pi * (radius + top_radius) * height
    caps = math.pi * (radius**2 + top_radius**2)
    on_side = rng.uniform(size=n) < side / (side + caps)
    t, angle = rng.uniform(size=n), rng.uniform(0, 2 * np.pi, n)
    r = np.where(on_side, radius + (top_radius - radius) * t, 0.0)
    top = rng.uniform(size=n) < top_radius**2 / max(radius**2 + top_radius**2, 1e-9)
    cap_r = np.where(top, top_radius, radius) * np.sqrt(rng.uniform(size=n))
    r = np.where(on_side, r, cap_r)
    y = np.where(on_side, t * height, np.where(top, height, 0.0)) - height / 2
    return np.stack([r * np.cos(angle), y, r * np.sin(angle)], axis=1) + center


def _sphere(rng, n, center=(0, 0, 0), radius=1.0):
    points = rng.normal(size=(n, 3))
    return radius * points / np.linalg.norm(points, axis=1, keepdims=True) + center


def _torus(rng, n):
    u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
    return np.stack([(1 + 0.3 * np.cos(v)) * np.cos(u), 0.3 * np.sin(v), (1 + 0.3 * np.cos(v)) * np.sin(u)], axis=1)


def _pyramid(rng, n):
    base = rng.uniform(size=n) < 0.3
    corners = np.array([[-1, -0.5, -1], [1, -0.5, -1], [1, -0.5, 1], [-1, -0.5, 1]], dtype=np.float64)
    apex = np.array([0.0, 1.0, 0.0])
    face = rng.integers(0, 4, n)
    a, b = rng.uniform(size=n), rng.uniform(size=n)
    flip = a + b > 1
    a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
    sides = corners[face] + a[:, None] * (corners[(face + 1) % 4] - corners[face]) + b[:, None] * (apex - corners[face])
    floor = np.stack([rng.uniform(-1, 1, n), np.full(n, -0.5), rng.uniform(-1, 1, n)], axis=1)
    return np.where(base[:, None], floor, sides)


def _parts(rng, n, parts):
    """Points from several parts, `n` in all, split by each part's weight."""
    weights = np.array([weight for weight, _ in parts], dtype=np.float64)
    counts = rng.multinomial(n, weights / weights.sum())
    return np.concatenate([make(count) for (_, make), count in zip(parts, counts)])


def _legs(rng, height, spread_x, spread_z, thickness):
    """Four legs below the origin, at `(+-spread_x, +-spread_z)`."""
    size = (thickness, height, thickness)
    return [(thickness * height, lambda k, x=x, z=z: _box(rng, k, (x, -height / 2, z), size))
            for x in (-spread_x, spread_x) for z in (-spread_z, spread_z)]  # fmt: skip


def shape_points(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` surface points of one procedural shape of class `kind`, before pose, scale and noise."""
    if kind == "cube":
        return _box(rng, n, (0, 0, 0), (1.6, 1.6, 1.6))
    if kind == "cylinder":
        return _cylinder(rng, n, (0, 0, 0), 0.6, 2.0)
    if kind == "cone":
        return _cylinder(rng, n, (0, 0, 0), 0.9, 1.8, top_radius=0.0)
    if kind == "torus":
        return _torus(rng, n)
    if kind == "sphere":
        return _sphere(rng, n)
    if kind == "pyramid":
        return _pyramid(rng, n)
    if kind == "chair":
        seat = (3.0, lambda k: _box(rng, k, (0, 0, 0), (1.2, 0.15, 1.2)))
        back = (3.0, lambda k: _box(rng, k, (0, 0.7, -0.55), (1.2, 1.4, 0.12)))
        return _parts(rng, n, [seat, back, *_legs(rng, 1.0, 0.5, 0.5, 0.12)])
    if kind == "table":
        top = (5.0, lambda k: _box(rng, k, (0, 0, 0), (2.0, 0.12, 1.2)))
        return _parts(rng, n, [top, *_legs(rng, 1.2, 0.9, 0.5, 0.1)])
    if kind == "lamp":
        base = (1.0, lambda k: _cylinder(rng, k, (0, -1.0, 0), 0.5, 0.1))
        pole = (1.0, lambda k: _cylinder(rng, k, (0, -0.2, 0), 0.05, 1.6))
        shade = (2.0, lambda k: _cylinder(rng, k, (0, 0.8, 0), 0.7, 0.6, top_radius=0.3))
        return _parts(rng, n, [base, pole, shade])
    body = (4.0, lambda k: _cylinder(rng, k, (0, -0.3, 0), 0.5, 1.4))
    neck = (1.0, lambda k: _cylinder(rng, k, (0, 0.75, 0), 0.18, 0.7))
    return _parts(rng, n, [body, neck])


def random_pose_and_view(points: np.ndarray, rng: np.random.Generator, partial: float) -> np.ndarray:
    """A turn about the up axis, a tilt of up to 10 degrees, a scale per axis in [0.8, 1.2], noise, and with
    probability `partial` only the points on one side of a random plane (at most 30 % removed)."""
    turn, tilt = rng.uniform(0, 2 * np.pi), rng.uniform(-np.pi / 18, np.pi / 18)
    up = np.array([[np.cos(turn), 0, np.sin(turn)], [0, 1, 0], [-np.sin(turn), 0, np.cos(turn)]])
    lean = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    points = points * rng.uniform(0.8, 1.2, 3) @ (lean @ up).T
    points = points + rng.normal(scale=0.01, size=points.shape)
    if rng.uniform() < partial:
        direction = rng.normal(size=3)
        side = points @ (direction / np.linalg.norm(direction))
        points = points[side <= np.quantile(side, 0.7)]
    return points.astype(np.float32)


def synthetic_split(per_class: int, seed: int, num_points: int = 1024) -> Dataset:
    rng = np.random.default_rng(seed)
    clouds, labels = [], []
    for label, kind in enumerate(SHAPES):
        for _ in range(per_class):
            clouds.append(random_pose_and_view(shape_points(kind, rng, num_points), rng, partial=0.3))
            labels.append(label)
    return Dataset.from_dict({"points": clouds, "label": labels}, features=point_features(SHAPES))


# ---------------------------------------------------------------------------------------------------- model


def random_clip_folder(folder: Path, image_size: int, width: int, seed: int) -> Path:
    """A small CLIP with random weights and the byte-level tokenizer of the tests, saved in `folder`."""
    config = CLIPConfig(
        text_config=dict(vocab_size=514, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=512, eos_token_id=513,
                         pad_token_id=513),
        vision_config=dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=4, num_attention_heads=4,
                           image_size=image_size, patch_size=8),
        projection_dim=width,
        logit_scale_init_value=math.log(100.0),
    )  # fmt: skip
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPTokenizer(vocab=byte_level_vocab(), merges=[]).save_pretrained(folder)
    return folder


def load_bench_model(args, folder: Path) -> PointCLIPModel:
    source = args.model
    if source == "random":
        source = str(random_clip_folder(folder, args.image_size, args.width, args.seed))
    model = PointCLIPModel.from_pretrained(source, projection_style=args.projection).eval()
    if args.model == "random":
        model.processor = PointCLIPProcessor(
            PointCLIPFeatureExtractor(args.projection, num_points=args.num_points, image_size=args.image_size),
            processor_for_model(model).tokenizer,
        )
    return model.to(args.device)


# ---------------------------------------------------------------------------------------------------- measures


def encode(model, dataset, name: str, class_names, batch_size: int):
    """`(view features, labels)` of a labelled dataset, encoded once."""
    extractor = processor_for_model(model).feature_extractor
    split = prepare_split(dataset, name, class_names, extractor, model.device, batch_size, False)
    return encode_split(model, extractor, split, batch_size, False), split.labels


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return accuracy_of(logits.argmax(-1), labels)


@torch.no_grad()
def scores(model, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(logits, fused features)` of cached view features, with the model's heads as they are."""
    output = model(view_features=features)
    return output.logits.float().cpu(), fused_features(output.point_cloud_embeds).cpu()


def grids(args) -> dict:
    """The search candidates: Tip-Adapter's grid shape (200 betas, 20 alphas from 0.1) up to the chosen scales."""
    return {"betas": cache_search_grid(args.beta_scale, 200), "alphas": cache_search_grid(args.alpha_scale, 20)}


def install_cache(model, keys_features, support_labels, validation, num_labels: int, grid: dict) -> dict:
    """Fill the model's cache from encoded support clouds and search alpha, beta on the validation features: the
    steps of `build_cache`, on features encoded once."""
    model.cache = None
    val_logits, val_fused = scores(model, validation[0])
    _, keys = scores(model, keys_features)
    values = torch.nn.functional.one_hot(support_labels.cpu(), num_labels)
    affinity = val_fused.double() @ keys.double().T
    found = search_cache_weights(val_logits, affinity, values, validation[1].cpu(), **grid)
    model.set_cache(keys.to(model.device), support_labels)
    model.config.cache_alpha, model.config.cache_beta = found.alpha, found.beta
    return {"alpha": found.alpha, "beta": found.beta, "validation_accuracy": found.accuracy}


def feature_spread(model, train, test_encoded, class_names, batch_size: int) -> dict:
    """How far apart the fused features are (cosines of test to training clouds) and how often a test cloud's nearest
    training cloud has its class: what a cache can use, whatever the text does."""
    train_features, train_labels = encode(model, train, "train", class_names, batch_size)
    _, train_fused = scores(model, train_features)
    _, test_fused = scores(model, test_encoded[0])
    cosines = test_fused.double() @ train_fused.double().T
    nearest = train_labels.cpu()[cosines.argmax(-1)]
    return {"cosine_min": float(cosines.min()), "cosine_mean": float(cosines.mean()),
            "nearest_neighbour_accuracy": accuracy_of(nearest, test_encoded[1].cpu())}  # fmt: skip


def accuracy_of(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions == labels).double().mean())


def adapted_accuracy(logits, fused, labels, order) -> float:
    """Accuracy of the test-time cache over the test stream in `order`."""
    cache = TestTimeCache(logits.shape[1])
    adapted = cache.adapt(fused[order], logits[order])
    return accuracy(adapted, labels[order])


def interleaved_pairs(first, second, pairs: int) -> tuple[list[float], list[float]]:
    """Time `first()` and `second()` alternately (so load hits both alike); per-call seconds of each."""
    first(), second()
    times_first, times_second = [], []
    for _ in range(pairs):
        for fn, times in ((first, times_first), (second, times_second)):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    return times_first, times_second


# ---------------------------------------------------------------------------------------------------- runs


def load_splits(args):
    if args.dataset == "synthetic":
        pool, test = synthetic_split(args.per_class_train, 1), synthetic_split(args.per_class_test, 2)
        class_names = list(SHAPES)
    else:
        pool = load_point_cloud_dataset(args.dataset, split="train")
        test = load_point_cloud_dataset(args.dataset, split="test")
        class_names = list(pool.features["label"].names)
    train, validation = train_validation_split(pool, 0.2, seed=0)
    return train, validation, test, class_names


def run_cache(model, train, validation_encoded, test_encoded, class_names, args) -> dict:
    """Accuracy of the training-free cache for every shot count and seed."""
    results = {}
    for shots in args.shots:
        runs = []
        for seed in args.seeds:
            support = few_shot_subset(train, shots, seed=seed)
            support_encoded = encode(model, support, "support", class_names, args.batch_size)
            found = install_cache(model, *support_encoded, validation_encoded, len(class_names), grids(args))
            logits, _ = scores(model, test_encoded[0])
            runs.append(dict(found, seed=seed, test_accuracy=accuracy(logits, test_encoded[1].cpu())))
        results[shots] = runs
        print(f"  cache {shots:2d} shots: test accuracy {mean_std([r['test_accuracy'] for r in runs])}", flush=True)
    return results


def run_fine_tuned(model, train, validation, test_encoded, args) -> list[dict]:
    """Tip-Adapter-F: the largest shot count's cache, keys trained with `train_adapter` at alpha = beta = 1, alpha and
    beta searched again on validation."""
    from pointclip_hf.cache_building import search_cache_on_validation

    shots, runs = max(args.shots), []
    for seed in args.seeds:
        support = few_shot_subset(train, shots, seed=seed)
        model.build_cache(support, shots=None, validation=validation, batch_size=args.batch_size, progress=False,
                          **grids(args))  # fmt: skip
        model.config.cache_alpha = model.config.cache_beta = 1.0  # Tip-Adapter-F trains at its initial values
        config = TrainingConfig(epochs=args.fine_tune_epochs, batch_size=32, learning_rate=args.fine_tune_lr,
                                augment=False, seed=seed, progress=False)  # fmt: skip
        result = train_adapter(model, support, validation, config=config)
        found = search_cache_on_validation(model, validation, batch_size=args.batch_size, progress=False,
                                           **grids(args))  # fmt: skip
        logits, _ = scores(model, test_encoded[0])
        runs.append({"seed": seed, "best_epoch": result.best_epoch, **found,
                     "test_accuracy": accuracy(logits, test_encoded[1].cpu())})  # fmt: skip
    print(f"  cache-F {shots} shots ({args.fine_tune_epochs} epochs): test accuracy "
          f"{mean_std([r['test_accuracy'] for r in runs])}", flush=True)  # fmt: skip
    return runs


def time_build(model, train, validation, args, cache_runs: dict) -> dict:
    """Wall time of `model.build_cache` (encode the support and validation clouds, search) per shot count, for the
    first seed; its alpha and beta must be those the feature path found for that seed."""
    times = {}
    for shots in args.shots:
        support = few_shot_subset(train, shots, seed=args.seeds[0])
        started = time.perf_counter()
        info = model.build_cache(support, shots=None, validation=validation, batch_size=args.batch_size,
                                 progress=False, **grids(args))  # fmt: skip
        times[shots] = time.perf_counter() - started
        first = cache_runs[shots][0]
        agree = (info["search"]["alpha"], info["search"]["beta"]) == (first["alpha"], first["beta"])
        print(f"  build_cache {shots:2d} shots ({len(support)} support + {len(validation)} validation clouds): "
              f"{times[shots]:.2f} s; same alpha and beta as above: {agree}", flush=True)  # fmt: skip
    return times


@torch.inference_mode()
def time_overhead(model, clouds: list[np.ndarray], pairs: int) -> dict:
    """Per-cloud cost of the cache head and of the test-time cache, against classify (render + tower + head)."""
    processor = processor_for_model(model)
    labels = list(model.config.label_names)
    text = label_embeddings(model, processor, labels)
    pixel_values = processor.feature_extractor(clouds)["pixel_values"].to(model.device)
    features = model.get_view_features(pixel_values)
    cache = model.cache

    def classify_with():
        model.cache = cache
        return model(pixel_values=pixel_values, text_embeds=text)

    def classify_without():
        model.cache = None
        return model(pixel_values=pixel_values, text_embeds=text)

    def head_with():
        model.cache = cache
        return model(view_features=features, text_embeds=text)

    def head_without():
        model.cache = None
        return model(view_features=features, text_embeds=text)

    with_cache, without_cache = interleaved_pairs(classify_with, classify_without, pairs)
    head, plain_head = interleaved_pairs(head_with, head_without, pairs * 4)
    model.cache = cache
    output = model(view_features=features, text_embeds=text)
    fused = fused_features(output.point_cloud_embeds)
    started = time.perf_counter()
    TestTimeCache(len(labels)).adapt(fused, output.logits)
    adapt = time.perf_counter() - started
    n = len(clouds)
    classify_ms = 1e3 * statistics.median(without_cache) / n
    head_ms = 1e3 * (statistics.median(head) - statistics.median(plain_head)) / n
    adapt_ms = 1e3 * adapt / n
    return {
        "clouds": n, "pairs": pairs, "classify_ms_per_cloud": classify_ms,
        "classify_with_cache_ms_per_cloud": 1e3 * statistics.median(with_cache) / n,
        "end_to_end_overhead_pct": 100 * (statistics.median(with_cache) / statistics.median(without_cache) - 1),
        "cache_head_ms_per_cloud": head_ms, "cache_head_pct_of_classify": 100 * head_ms / classify_ms,
        "test_time_cache_ms_per_cloud": adapt_ms, "test_time_cache_pct_of_classify": 100 * adapt_ms / classify_ms,
        "cache_entries": int(cache.keys.shape[0]), "feature_width": int(cache.keys.shape[1]),
    }  # fmt: skip


def overhead_model(args, model) -> PointCLIPModel:
    """The model whose classify the head's cost is compared with: the benchmarked one, or a full-size random CLIP
    (`--overhead-arch vit-b16`) with a random cache of the same size (16 shots x the classes)."""
    if args.overhead_arch is None:
        return model
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from bench_inference import build_model

    big = build_model(args.overhead_arch, args.projection, torch.device(args.device), torch.float32, seed=0)
    big.processor = PointCLIPProcessor(PointCLIPFeatureExtractor(args.projection), processor_for_model(model).tokenizer)
    big.config.label_names = list(model.config.label_names)
    entries = max(args.shots) * len(big.config.label_names)
    keys = torch.nn.functional.normalize(torch.randn(entries, big.config.num_views * big.config.embed_dim), dim=-1)
    big.set_cache(keys, torch.arange(entries) % len(big.config.label_names))
    return big


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f} %"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f} %"


def environment(args) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0],
            "device": args.device, "torch": torch.__version__}  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic", help="synthetic, or a dataset for load_point_cloud_dataset")
    parser.add_argument("--model", default="random", help="random (a small random CLIP), or a CLIP checkpoint")
    parser.add_argument("--projection", default="pointclip_v1", help="pointclip_v1 or pointclip_v2")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--per-class-train", type=int, default=24, help="synthetic training clouds per class")
    parser.add_argument("--per-class-test", type=int, default=20, help="synthetic test clouds per class")
    parser.add_argument("--num-points", type=int, default=1024, help="points per cloud (random model)")
    parser.add_argument("--image-size", type=int, default=64, help="depth-map size of the random model")
    parser.add_argument("--width", type=int, default=64, help="width of the random model")
    parser.add_argument("--beta-scale", type=float, default=7.0, help="betas searched in [0.1, this) (Tip: 7)")
    parser.add_argument("--alpha-scale", type=float, default=3.0, help="alphas searched in [0.1, this) (Tip: 3)")
    parser.add_argument("--fine-tune-epochs", type=int, default=20)
    parser.add_argument("--fine-tune-lr", type=float, default=0.001, help="SGD learning rate (Tip-Adapter-F: 0.001)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=5, help="interleaved timing pairs")
    parser.add_argument("--overhead-arch", choices=["vit-b32", "vit-b16"], help="time the head next to this tower")
    parser.add_argument("--overhead-clouds", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random model")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "cache.json")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    import tempfile

    args = parse_args(argv)
    env = environment(args)
    print(f"{env['cpu']}, {env['torch_threads']} threads, load average {env['load_average_1min']:.2f}, "
          f"device {args.device}; dataset {args.dataset}, model {args.model}, projection {args.projection}",
          flush=True)  # fmt: skip
    train, validation, test, class_names = load_splits(args)
    with tempfile.TemporaryDirectory() as folder:
        model = load_bench_model(args, Path(folder))
        model.config.label_names = class_names
        model.set_label_text_embeds(label_embeddings(model, processor_for_model(model), class_names))
        validation_encoded = encode(model, validation, "validation", class_names, args.batch_size)
        test_encoded = encode(model, test, "test", class_names, args.batch_size)
        order = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
        zero_logits, zero_fused = scores(model, test_encoded[0])
        labels = test_encoded[1].cpu()
        results = {"environment": env, "arguments": {k: str(v) for k, v in vars(args).items()},
                   "sizes": {"train": len(train), "validation": len(validation), "test": len(test)},
                   "zero_shot": accuracy(zero_logits, labels),
                   "zero_shot_test_time_cache": adapted_accuracy(zero_logits, zero_fused, labels, order)}  # fmt: skip
        print(f"  zero-shot: test accuracy {100 * results['zero_shot']:.1f} %; with the test-time cache "
              f"{100 * results['zero_shot_test_time_cache']:.1f} %", flush=True)  # fmt: skip
        results["feature_spread"] = feature_spread(model, train, test_encoded, class_names, args.batch_size)
        print("  fused features, test to training clouds: " + ", ".join(
            f"{k} {v:.4f}" for k, v in results["feature_spread"].items()), flush=True)  # fmt: skip
        results["cache"] = run_cache(model, train, validation_encoded, test_encoded, class_names, args)
        cache_logits, cache_fused = scores(model, test_encoded[0])  # the last seed of the largest shot count
        results["cache_test_time_cache"] = adapted_accuracy(cache_logits, cache_fused, labels, order)
        alone = results["cache"][max(args.shots)][-1]["test_accuracy"]
        print(f"  cache {max(args.shots)} shots, seed {args.seeds[-1]}: test accuracy {100 * alone:.1f} %, with the "
              f"test-time cache {100 * results['cache_test_time_cache']:.1f} %", flush=True)  # fmt: skip
        results["build_seconds"] = time_build(model, train, validation, args, results["cache"])
        results["overhead"] = time_overhead(overhead_model(args, model), list(test.with_format("numpy")["points"])
                                            [: args.overhead_clouds], args.pairs)  # fmt: skip
        print("  per cloud: " + ", ".join(f"{k} {v:.3g}" for k, v in results["overhead"].items()), flush=True)
        if args.fine_tune_epochs:
            results["cache_f"] = run_fine_tuned(model, train, validation, test_encoded, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
