#!/usr/bin/env python
"""Inference benchmark of PointCLIP with full-size CLIP architectures and random weights (fully offline).

What it builds
    `PointCLIPModel(PointCLIPConfig(clip_config=..., projection_style=...))` around a randomly initialised CLIP of the
    real size: ViT-B/32 or ViT-B/16 image tower (hidden 768, 12 layers, 12 heads, MLP 3072, 224x224 input), the CLIP
    text tower (hidden 512, 12 layers, 8 heads, MLP 2048, vocabulary 49408, 77 positions), projection 512, SDPA
    attention, eval mode, `--dtype` fp32 (default) / bf16 / fp16 / auto, `--backend` torch (default) / compile /
    onnxruntime. Random weights cost exactly what trained ones do.
    One model is built per architecture; switching projection style swaps in a fresh `PointCLIPConfig` (same CLIP).

Tokenizer and prompt length (text cost depends on the sequence length only)
    A byte-level CLIPTokenizer without merges, like `testing_utils.build_tiny_tokenizer`, that always pads /
    truncates to a fixed length L. By default L is the length the real CLIP BPE tokenizer gives with this package's
    `padding=True` (pad to the longest of the 40 ModelNet40 prompts, start/end tokens included), estimated by hand:
    12 for "point cloud depth map of a {}." (pointclip_v1), 10 for "point cloud of a big {}." (fewshot), 18 for
    "An obscure grayscale depth map of an inclined rough {} 3D model." (pointclip_v2). `--text-tokens 77` measures
    the OpenAI-style pad-to-77 case instead. The text cost only matters for the cold (uncached) label set.

What it measures, per architecture x projection style x batch size B (clouds of N=2048 points, 1024 kept)
    read        np.load of one [2048, 3] float32 .npy per cloud (files in a temp dir, so page-cache warm).
    proc        PointCLIPFeatureExtractor: prepare_points (checks, unit-sphere normalisation, sampling) + render
                (projection, bilinear resize to 224, 3 channels), from a list of B numpy clouds, timed on its own
                with many repeats.
    e2e         the classify-equivalent path, one batch: prepare + render + get_view_features (CLIP image tower) +
                get_label_embeddings (cached label set) + forward(view_features, text_embeds) + softmax/top-k.
                Every stage is timed in situ (device synchronised between stages), so the tower time and the share
                of the end-to-end time spent outside the tower come from the same runs.
    text        cold: model._text_cache cleared, 40 ModelNet40 labels x 1 template (tokenise + text tower); cached:
                the second call. Forward calls of the text tower are counted with a hook.
    FLOP/s      analytic FLOPs of the image tower (patch conv + per layer 2*T*(4*d*d + 2*d*ff) + 4*T*T*d attention
                + post-LN + projection; cross-checked once with torch.utils.flop_counter.FlopCounterMode), divided by
                the in-situ tower time, against the best of several large `torch.mm` in the same dtype on the same
                device.
    memory      peak resident set size during the cell (Linux: VmHWM after resetting it through
                /proc/self/clear_refs; otherwise ru_maxrss, which never goes down); on CUDA max_memory_allocated.

Timing: torch.inference_mode, warm-up before every cell (for a batch of more than max_images_per_batch images
the warm-up uses one full chunk only, to keep big configs affordable), time.perf_counter, medians of the repeats,
min and max kept to show the noise, the 1-minute load average recorded before and after every cell.

Examples:
    python benchmarks/bench_inference.py --quick                      # batch 8, ViT-B/32, ~2 min on 2 cores
    python benchmarks/bench_inference.py --arch vit-b32               # one architecture, batches 1, 8, 32
    python benchmarks/bench_inference.py                              # both architectures (< 15 min, quiet 2-core CPU)
    python benchmarks/bench_inference.py --arch vit-b16 --batch-sizes 32 --styles pointclip_v1 pointclip_v2
    python benchmarks/bench_inference.py --device cuda --dtype bf16 --repeats 10

Several `--dtype` or `--backend` values compare image-tower variants instead, interleaved, with feature agreement
against float32 (see `tower_variants.py`):
    python benchmarks/bench_inference.py --arch vit-b32 --batch-sizes 8 --dtype fp32 bf16 --backend torch onnxruntime
"""

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from machine import cpu_description, load_average, reset_peak_resident, resident_mib  # noqa: E402
from tower_variants import BACKENDS, compare_variants  # noqa: E402
from transformers import CLIPConfig, CLIPTokenizer  # noqa: E402

import pointclip_hf  # noqa: E402
from pointclip_hf import PointCLIPConfig, PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor  # noqa: E402
from pointclip_hf.dtype_policy import DTYPE_CHOICES, resolve_dtype  # noqa: E402
from pointclip_hf.model.choices import dtype_name  # noqa: E402
from pointclip_hf.model.cpu_threads import map_on_cpu_threads, num_worker_threads  # noqa: E402
from pointclip_hf.model.pipeline_pointclip import (
    _LABEL_EMBEDDINGS,
    label_embeddings,
    scores_to_predictions,  # noqa: E402
)
from pointclip_hf.testing_utils import byte_level_vocab, random_clip_config  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
STYLES = ("pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2")
ARCHS = {
    "vit-b32": {"patch_size": 32, "name": "ViT-B/32"},
    "vit-b16": {"patch_size": 16, "name": "ViT-B/16"},
}
# Real CLIP BPE length of the longest ModelNet40 prompt per style (start and end tokens included), estimated.
BPE_PROMPT_TOKENS = {"pointclip_v1": 12, "pointclip_v1_fewshot": 10, "pointclip_v2": 18}
MODELNET40 = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp",
    "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)  # fmt: skip
NUM_RAW_POINTS = 2048
# (arch, style, batch, max share of the end-to-end time outside the image tower, in %)
SHARE_TARGETS = (
    ("vit-b16", "pointclip_v1", 32, 1.0),
    ("vit-b16", "pointclip_v2", 32, 2.0),
    ("vit-b32", "pointclip_v1", 32, 2.0),
    ("vit-b32", "pointclip_v2", 32, 5.0),
)
TOWER_EFFICIENCY_TARGET = ("vit-b16", 90.0)  # fp32 image tower >= 90 % of a matmul of its largest shape


# ---------------------------------------------------------------------------------------------------- helpers


def log(message: str = "") -> None:
    print(message, flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageClock:
    """Wall-clock stage timer: `clock.lap("name")` closes the stage that started at the previous lap."""

    def __init__(self, device: torch.device):
        self.device = device
        self.times: dict[str, float] = {}
        synchronize(device)
        self.start = self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        synchronize(self.device)
        now = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return self.last - self.start


def summarize(values: list[float]) -> dict:
    median = statistics.median(values)
    spread = 100.0 * (max(values) - min(values)) / median if median else 0.0
    return {"median": median, "min": min(values), "max": max(values), "repeats": len(values), "spread_pct": spread}


def repeat_timed(fn, device, min_repeats: int, max_repeats: int, min_seconds: float, warmup: int = 1) -> list[float]:
    """Time `fn()` after `warmup` calls: at least `min_repeats`, then until `min_seconds` are spent (at most
    `max_repeats`). Returns the per-call seconds."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < min_repeats or (spent < min_seconds and len(times) < max_repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return times


class PeakMemory:
    """Peak memory of a block: RSS high-water mark on Linux (reset through /proc/self/clear_refs), peak allocated
    bytes on CUDA."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resettable = False

    def reset(self) -> None:
        self.resettable = reset_peak_resident()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def read(self) -> dict:
        maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        if sys.platform == "darwin":
            maxrss_kib //= 1024
        result = {
            "peak_rss_mib": resident_mib("VmHWM") if self.resettable else maxrss_kib / 1024,
            "peak_rss_source": "VmHWM (reset per cell)" if self.resettable else "ru_maxrss (process lifetime)",
            "process_maxrss_mib": maxrss_kib / 1024,
        }
        if self.device.type == "cuda":
            result["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return result


# ---------------------------------------------------------------------------------------------------- model


BOS_ID, EOS_ID = 512, 513


class FixedLengthTokenizer(CLIPTokenizer):
    """Byte-level CLIP tokenizer (no merges) that always pads / truncates to `fixed_length` tokens, so the text tower
    sees the sequence length a real CLIP tokenizer would give (see the module docstring). It truncates on the left, so
    the label at the end of each prompt survives and the labels stay distinct."""

    fixed_length = 77

    def __call__(self, *args, **kwargs):
        kwargs.update(padding="max_length", truncation=True, max_length=self.fixed_length)
        return super().__call__(*args, **kwargs)


def build_tokenizer(length: int) -> FixedLengthTokenizer:
    tokenizer = FixedLengthTokenizer(vocab=byte_level_vocab(), merges=[], truncation_side="left")
    tokenizer.fixed_length = length
    return tokenizer


def build_clip_config(arch: str, attn: str = "sdpa") -> CLIPConfig:
    patch_size = ARCHS[arch]["patch_size"]
    return random_clip_config(
        "vit-b", num_layers=12, image_size=224, patch_size=patch_size, vocab_size=49408, attn_implementation=attn
    )


def pointclip_config(clip_config: CLIPConfig, style: str, max_images_per_batch: int | None = None) -> PointCLIPConfig:
    extra = {} if max_images_per_batch is None else {"max_images_per_batch": max_images_per_batch}
    return PointCLIPConfig(clip_config=clip_config, projection_style=style, clip_model_name_or_path=None, **extra)


def build_model(arch, style, device, dtype, seed: int, attn: str = "sdpa") -> PointCLIPModel:
    torch.manual_seed(seed)
    model = PointCLIPModel(pointclip_config(build_clip_config(arch, attn), style))
    model.set_attn_implementation(attn)
    check_attention(model, attn)
    return model.to(device=device, dtype=dtype).eval()


def use_style(model: PointCLIPModel, style: str, text_tokens: int | None, attn: str, max_images: int | None = None):
    """Point `model` at projection `style` (fresh config, same CLIP weights) and return its processor.

    Building a PointCLIPConfig around an existing CLIPConfig object resets that object's `_attn_implementation` to
    None, which transformers reads as "eager": the attention implementation is set again and checked."""
    model.config = pointclip_config(model.config.clip_config, style, max_images)
    model.set_attn_implementation(attn)
    check_attention(model, attn)
    _LABEL_EMBEDDINGS.pop(model, None)
    tokenizer = build_tokenizer(text_tokens or BPE_PROMPT_TOKENS[style])
    feature_extractor = PointCLIPFeatureExtractor(
        projection_style=style, image_size=model.config.clip_config.vision_config.image_size
    )
    processor = PointCLIPProcessor(feature_extractor, tokenizer, model.config.prompt_templates)
    model.processor = processor
    return processor


def check_attention(model: PointCLIPModel, attn: str) -> None:
    seen = {m.config._attn_implementation for m in model.modules() if type(m).__name__ == "CLIPAttention"}
    if seen != {attn}:
        raise RuntimeError(f"CLIP attention modules use {seen}, expected {{{attn!r}}}.")


def tower_flops_per_image(vision_config, projection_dim: int) -> dict:
    """Analytic FLOPs (2 per multiply-add) of CLIP's image tower for one image."""
    d, ff, layers = vision_config.hidden_size, vision_config.intermediate_size, vision_config.num_hidden_layers
    patch, size = vision_config.patch_size, vision_config.image_size
    patches = (size // patch) ** 2
    tokens = patches + 1
    patch_embed = 2 * patches * (3 * patch * patch) * d
    dense = layers * 2 * tokens * (4 * d * d + 2 * d * ff)
    attention = layers * 2 * 2 * tokens * tokens * d
    head = 2 * d * projection_dim
    return {"tokens": tokens, "patch_embed": patch_embed, "dense": dense, "attention": attention, "projection": head,
            "total": patch_embed + dense + attention + head}  # fmt: skip


def counted_tower_flops(model: PointCLIPModel, device: torch.device) -> float | None:
    """FLOPs of one image through `get_view_features`, counted by FlopCounterMode (matmuls, convs, SDPA)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    size = model.config.clip_config.vision_config.image_size
    pixels = torch.rand(1, model.config.num_views, 3, size, size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.get_view_features(pixels)
    return counter.get_total_flops() / model.config.num_views


def tower_matmul_shape(model: PointCLIPModel) -> tuple[int, int, int]:
    """The image tower's largest matrix product per call, `(m, k, n)`: the MLP's first layer over the tokens of the
    `images_per_tower_call()` images of one call (ViT-B/16, V1 views on the CPU: 3 x 197 tokens, 768 -> 3072)."""
    vision = model.config.clip_config.vision_config
    tokens = (vision.image_size // vision.patch_size) ** 2 + 1
    return model.images_per_tower_call() * tokens, vision.hidden_size, vision.intermediate_size


def matmul_throughput(device: torch.device, dtype: torch.dtype, shape: tuple[int, int, int], repeats: int) -> dict:
    """GFLOP/s of `[m, k] @ [k, n]` products in `dtype`, the yardstick of the tower: on the CPU one product per worker
    thread at once (`pointclip_hf.model.cpu_threads`, as the tower's calls run), elsewhere one. Best and median of
    `repeats` after one warm-up."""
    m, k, n = shape
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(k, n, generator=generator).to(device=device, dtype=dtype)
    copies = num_worker_threads(device)
    with torch.inference_mode():
        times = repeat_timed(lambda: map_on_cpu_threads(lambda _: a @ b, range(copies), device), device, repeats,
                             repeats, 0.0, warmup=1)  # fmt: skip
    flops = 2 * m * k * n * copies
    return {"shape": list(shape), "copies": copies, "dtype": str(dtype).replace("torch.", ""),
            "best_gflops": flops / min(times) / 1e9, "median_gflops": flops / statistics.median(times) / 1e9,
            "times_s": times}  # fmt: skip


# ---------------------------------------------------------------------------------------------------- data


def write_clouds(directory: Path, count: int, seed: int) -> list[Path]:
    """`count` [2048, 3] float32 clouds derived from examples/*.npy (random rotation about y, point order shuffled,
    1% jitter), saved as .npy files. Falls back to noisy spheres when the examples are missing."""
    rng = np.random.default_rng(seed)
    bases = []
    for name in ("table", "mug", "teddy_bear"):
        path = REPO_ROOT / "examples" / f"{name}.npy"
        if path.exists():
            bases.append(np.load(path).astype(np.float32)[:, :3])
    if not bases:
        sphere = rng.normal(size=(NUM_RAW_POINTS, 3)).astype(np.float32)
        bases = [sphere / np.linalg.norm(sphere, axis=1, keepdims=True)]
    paths = []
    for index in range(count):
        base = bases[index % len(bases)]
        base = base[rng.choice(len(base), NUM_RAW_POINTS, replace=len(base) < NUM_RAW_POINTS)]
        angle = rng.uniform(0, 2 * np.pi)
        rotation = np.array(
            [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]], dtype=np.float32
        )
        cloud = base @ rotation.T + rng.normal(scale=0.01, size=base.shape).astype(np.float32)
        path = directory / f"cloud_{index:03d}.npy"
        np.save(path, cloud.astype(np.float32))
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------------- measurements


def measure_text(model: PointCLIPModel, processor: PointCLIPProcessor, device: torch.device, repeats: int) -> dict:
    """Cold (cache cleared) and cached `get_label_embeddings` of the 40 ModelNet40 labels, with text-tower calls."""
    calls = {"count": 0}
    hook = model.clip.text_model.register_forward_hook(lambda *_: calls.__setitem__("count", calls["count"] + 1))
    try:
        labels = list(MODELNET40)
        with torch.inference_mode():
            # warm-up (kernels, tokenizer), then cold calls with a cleared cache each time
            _LABEL_EMBEDDINGS.pop(model, None)
            label_embeddings(model, processor, labels)
            cold, cold_calls = [], []
            for _ in range(repeats):
                _LABEL_EMBEDDINGS.pop(model, None)
                calls["count"] = 0
                synchronize(device)
                start = time.perf_counter()
                label_embeddings(model, processor, labels)
                synchronize(device)
                cold.append(time.perf_counter() - start)
                cold_calls.append(calls["count"])
            calls["count"] = 0
            cached = repeat_timed(lambda: label_embeddings(model, processor, labels), device, 20, 200, 0.2, warmup=0)
            cached_calls = calls["count"] / len(cached)
    finally:
        hook.remove()
    tokens = processor.tokenizer([model.config.prompt_templates[0].format("x")], return_tensors="pt")["input_ids"]
    return {"labels": len(labels), "templates": len(model.config.prompt_templates),
            "tokens_per_prompt": tokens.shape[1], "cold_s": summarize(cold),
            "cold_text_tower_calls": statistics.mean(cold_calls), "cached_s": summarize(cached),
            "cached_text_tower_calls": cached_calls}  # fmt: skip


def measure_read(paths: list[Path], device: torch.device) -> dict:
    times = repeat_timed(lambda: [np.load(path) for path in paths], device, 5, 200, 0.3)
    return summarize(times)


def measure_processor(
    feature_extractor: PointCLIPFeatureExtractor, clouds: list[np.ndarray], device, quick: bool
) -> dict:
    def run():
        return feature_extractor.render(feature_extractor.prepare_points(clouds, device=device))

    with torch.inference_mode():
        times = repeat_timed(run, device, 3 if quick else 5, 100, 0.5 if quick else 1.5)
    return summarize(times)


def pipeline(model, processor, clouds, labels, device) -> dict[str, float]:
    """One classify-equivalent batch with per-stage times (seconds)."""
    feature_extractor = processor.feature_extractor
    clock = StageClock(device)
    points = feature_extractor.prepare_points(clouds, device=device)
    clock.lap("prepare")
    pixel_values = feature_extractor.render(points)
    clock.lap("render")
    view_features = model.get_view_features(pixel_values)
    clock.lap("tower")
    text_embeds = label_embeddings(model, processor, labels)
    clock.lap("text_cached")
    logits = model(view_features=view_features, text_embeds=text_embeds).logits
    clock.lap("score")
    scores_to_predictions(logits, labels, top_k=5)
    clock.lap("post")
    times = dict(clock.times)
    times["e2e"] = clock.total
    return times


def default_repeats(estimate_s: float) -> int:
    if estimate_s < 3:
        return 5
    if estimate_s < 20:
        return 3
    return 2


def measure_cell(model, processor, paths, batch, device, args, flops_per_image, matmul_gflops) -> dict:
    feature_extractor = processor.feature_extractor
    views = model.config.num_views
    labels = list(MODELNET40)
    clouds = [np.load(path) for path in paths[:batch]]
    result = {"batch": batch, "views": views, "images": batch * views, "load_avg_before": load_average()}
    result["read_s"] = measure_read(paths[:batch], device)
    result["proc_s"] = measure_processor(feature_extractor, clouds, device, args.quick)

    memory = PeakMemory(device)
    memory.reset()
    with torch.inference_mode():
        label_embeddings(model, processor, labels)  # the label set is cached, as after a first classify call
        chunk_images = model.config.max_images_per_batch or (8 if model.device.type == "cpu" else 128)
        chunk_clouds = max(1, math.ceil(chunk_images / views))
        # One full chunk warms every kernel of a big batch; a compiled tower needs every chunk shape (recompiles).
        warm_clouds = clouds if batch <= chunk_clouds or args.compile else clouds[:chunk_clouds]
        start = time.perf_counter()
        for _ in range(args.warmup):
            pipeline(model, processor, warm_clouds, labels, device)
        warm_s = (time.perf_counter() - start) / max(1, args.warmup)
        estimate = warm_s * batch / len(warm_clouds)
        repeats = args.repeats or (1 if args.quick and estimate > 20 else default_repeats(estimate))
        runs = [pipeline(model, processor, clouds, labels, device) for _ in range(repeats)]
    result["memory"] = memory.read()
    result["warmup"] = {"runs": args.warmup, "clouds": len(warm_clouds), "seconds_per_run": warm_s}

    stages = {name: summarize([run[name] for run in runs]) for name in runs[0]}
    result["stages_s"] = stages
    e2e = stages["e2e"]["median"]
    tower = stages["tower"]["median"]
    shares = [100.0 * (run["e2e"] - run["tower"]) / run["e2e"] for run in runs]
    result["outside_tower_pct"] = summarize(shares)
    result["outside_tower_breakdown_pct"] = {
        name: 100.0 * stages[name]["median"] / e2e for name in ("prepare", "render", "text_cached", "score", "post")
    }
    result["clouds_per_s"] = batch / e2e
    result["tower_gflops"] = flops_per_image * batch * views / tower / 1e9
    result["tower_vs_matmul_pct"] = 100.0 * result["tower_gflops"] / matmul_gflops
    result["load_avg_after"] = load_average()
    return result


# Functions timed by the processor profile: (module, attribute, label, parent label). Wrapped where they are looked
# up at call time, so the breakdown follows the current code; names that no longer exist are skipped.
PROFILED_FUNCTIONS = (
    ("feature_extraction", "to_point_batch", "to_point_batch", "prepare_points"),
    ("feature_extraction", "normalize_to_unit_sphere", "normalize_to_unit_sphere", "prepare_points"),
    ("feature_extraction", "sample_indices", "sample_indices", "prepare_points"),
    ("feature_extraction", "render_views", "render_views", "render"),
    ("projection", "check_point_batch", "check_point_batch", "render_views"),
    ("projection", "_splat_depth", "_splat_depth (v1)", "render_views"),
    ("projection", "_realistic_projection", "_realistic_projection (v2)", "render_views"),
    ("projection", "_points_to_grid", "_points_to_grid (v2)", "_realistic_projection (v2)"),
)


class _Instrumented:
    """Context manager that wraps PROFILED_FUNCTIONS and the processor's prepare_points / render with timers."""

    def __init__(self, feature_extractor: PointCLIPFeatureExtractor, device: torch.device):
        from pointclip_hf.model import feature_extraction_pointclip, projection

        self.modules = {"feature_extraction": feature_extraction_pointclip, "projection": projection}
        self.feature_extractor = feature_extractor
        self.device = device
        self.times: dict[str, float] = {}
        self.parents = {"prepare_points": None, "render": None}
        self.saved: list[tuple] = []

    def _wrap(self, function, label):
        def wrapper(*args, **kwargs):
            synchronize(self.device)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                synchronize(self.device)
                self.times[label] = self.times.get(label, 0.0) + time.perf_counter() - start

        return wrapper

    def __enter__(self):
        for module_name, attribute, label, parent in PROFILED_FUNCTIONS:
            module = self.modules[module_name]
            if callable(getattr(module, attribute, None)):
                self.saved.append((module, attribute, getattr(module, attribute)))
                setattr(module, attribute, self._wrap(getattr(module, attribute), label))
                self.parents[label] = parent
        for method in ("prepare_points", "render"):
            bound = getattr(self.feature_extractor, method)
            self.saved.append((self.feature_extractor, method, None))
            setattr(self.feature_extractor, method, self._wrap(bound, method))
        return self

    def __exit__(self, *exc):
        for owner, attribute, original in reversed(self.saved):
            if original is None:
                delattr(owner, attribute)  # drop the instance attribute: the class method shows through again
            else:
                setattr(owner, attribute, original)
        self.saved.clear()


def profile_processor(
    feature_extractor: PointCLIPFeatureExtractor, clouds: list[np.ndarray], device, repeats: int
) -> dict:
    """Where the processor's time goes, for one batch: inclusive times of the package functions it calls (with the
    remainder of each parent as "(rest of X)"), and the top operators of torch.profiler. Diagnostic only."""
    out: dict = {"batch": len(clouds), "style": feature_extractor.projection_style, "repeats": repeats}
    try:
        runs = []
        with torch.inference_mode():
            feature_extractor.render(feature_extractor.prepare_points(clouds, device=device))  # warm-up
            for _ in range(repeats):
                with _Instrumented(feature_extractor, device) as probe:
                    feature_extractor.render(feature_extractor.prepare_points(clouds, device=device))
                times = dict(probe.times)
                for label in probe.parents:  # exclusive remainder of every parent
                    if label in times and any(p == label and c in times for c, p in probe.parents.items()):
                        children = sum(times[c] for c, p in probe.parents.items() if p == label and c in times)
                        times[f"(rest of {label})"] = times[label] - children
                runs.append(times)
        names = list(runs[0])
        order = {"prepare_points": 0, "render": 1}
        out["parents"] = {label: parent for label, parent in probe.parents.items() if label in runs[0]}
        out["stages_ms"] = {name: 1000 * statistics.median(run[name] for run in runs) for name in names}
        out["stages_min_ms"] = {name: 1000 * min(run[name] for run in runs) for name in names}
        total = out["stages_ms"]["prepare_points"] + out["stages_ms"]["render"]
        out["total_ms"] = total
        out["stages_pct"] = {name: 100 * value / total for name, value in out["stages_ms"].items()}
        out["order"] = sorted(names, key=lambda n: order.get(n, 2))
    except Exception as error:  # noqa: BLE001 - a diagnostic must not stop the benchmark
        out["stages_error"] = repr(error)
    try:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch.inference_mode():
            with profile(activities=activities) as prof:
                for _ in range(repeats):
                    feature_extractor.render(feature_extractor.prepare_points(clouds, device=device))
                synchronize(device)
        key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        averages = sorted(prof.key_averages(), key=lambda event: getattr(event, key, 0), reverse=True)
        total = sum(getattr(event, key, 0) for event in averages) or 1
        out["top_ops_sorted_by"] = key
        out["top_ops"] = [
            {"op": e.key, "calls_per_run": e.count / repeats, "self_ms_per_run": getattr(e, key, 0) / 1000 / repeats,
             "self_pct": 100 * getattr(e, key, 0) / total}
            for e in averages[:12]
        ]  # fmt: skip
    except Exception as error:  # noqa: BLE001
        out["profiler_error"] = repr(error)
    return out


# ---------------------------------------------------------------------------------------------------- report


def fmt(value, digits=1, width=8) -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}"


def print_table(arch: str, cells: list[dict]) -> None:
    log(f"\n=== {ARCHS[arch]['name']}: per-cloud times in ms (median), e2e = prepare+render+tower+cached text+score")
    header = (
        f"{'style':<21}{'B':>3}{'read':>7}{'proc':>8}{'tower':>9}{'score*':>8}{'txt$*':>7}{'e2e':>9}"
        f"{'cl/s':>7}{'out%':>7}{'±e2e%':>7}{'GF/s':>7}{'%mm':>6}{'RSS MiB':>9}{'load':>6}"
    )
    log(header)
    log("-" * len(header))
    for cell in cells:
        batch = cell["batch"]
        stages = cell["stages_s"]
        memory = cell["memory"].get("cuda_max_allocated_mib", cell["memory"]["peak_rss_mib"])
        load = cell.get("load_avg_before")
        log(
            f"{cell['style']:<21}{batch:>3}{fmt(1000 * cell['read_s']['median'] / batch, 2, 7)}"
            f"{fmt(1000 * cell['proc_s']['median'] / batch, 2, 8)}{fmt(1000 * stages['tower']['median'] / batch, 1, 9)}"
            f"{fmt(1000 * stages['score']['median'], 2, 8)}{fmt(1000 * stages['text_cached']['median'], 2, 7)}"
            f"{fmt(1000 * stages['e2e']['median'] / batch, 1, 9)}{fmt(cell['clouds_per_s'], 2, 7)}"
            f"{fmt(cell['outside_tower_pct']['median'], 2, 7)}{fmt(stages['e2e']['spread_pct'], 1, 7)}"
            f"{fmt(cell['tower_gflops'], 0, 7)}{fmt(cell['tower_vs_matmul_pct'], 0, 6)}{fmt(memory, 0, 9)}"
            f"{fmt(load, 1, 6)}"
        )
    log("read: np.load per cloud; proc: prepare_points+render alone; score*/txt$*: per batch (forward from")
    log("features, cached label lookup); out%: e2e share outside the image tower; ±e2e%: (max-min)/median of the")
    log("e2e repeats; GF/s, %mm: tower FLOP/s and its ratio to the torch.mm figure; load: 1-min load average.")
    for cell in cells:
        parts = ", ".join(f"{k} {v:.2f}%" for k, v in cell["outside_tower_breakdown_pct"].items())
        log(f"  {cell['style']:<21} B={cell['batch']:<3} outside-tower parts of e2e: {parts}")


def evaluate_targets(results: dict) -> list[dict]:
    verdicts = []

    def find(arch, style, batch):
        cells = results.get(arch, {}).get("cells", [])
        exact = [c for c in cells if c["style"] == style and c["batch"] == batch]
        if exact:
            return exact[0], False
        other = sorted((c for c in cells if c["style"] == style), key=lambda c: -c["batch"])
        return (other[0], True) if other else (None, False)

    for arch, style, batch, limit in SHARE_TARGETS:
        cell, indicative = find(arch, style, batch)
        name = f"outside-tower share <= {limit:g}% ({ARCHS[arch]['name']}, {style}, batch {batch})"
        if cell is None:
            verdicts.append({"target": name, "status": "SKIP", "detail": "not measured"})
            continue
        share = cell["outside_tower_pct"]
        status = "PASS" if share["median"] <= limit else "FAIL"
        detail = f"{share['median']:.2f}% (repeats {share['min']:.2f}..{share['max']:.2f}%)"
        if indicative:
            detail += f" measured at batch {cell['batch']} only: indicative"
        verdicts.append({"target": name, "status": status, "detail": detail, "indicative": indicative})

    for arch, result in results.items():
        for style, text in result.get("text", {}).items():
            cold, cached = text["cold_s"]["median"], text["cached_s"]["median"]
            ok = text["cached_text_tower_calls"] == 0 and cached < 0.01 * cold
            verdicts.append({
                "target": f"cached label set costs no text-encoder time ({ARCHS[arch]['name']}, {style})",
                "status": "PASS" if ok else "FAIL",
                "detail": f"cached {1000 * cached:.3f} ms vs cold {1000 * cold:.1f} ms ({100 * cached / cold:.3f}%), "
                f"text-tower calls on the cached path: {text['cached_text_tower_calls']:g}",
            })  # fmt: skip

    arch, limit = TOWER_EFFICIENCY_TARGET
    cells = [c for c in results.get(arch, {}).get("cells", [])]
    if not cells:
        verdicts.append({"target": f"{ARCHS[arch]['name']} tower >= {limit:g}% of matmul", "status": "SKIP",
                         "detail": "not measured"})  # fmt: skip
    else:
        biggest = max(c["batch"] for c in cells)
        chosen = [c for c in cells if c["batch"] == biggest]
        worst = min(chosen, key=lambda c: c["tower_vs_matmul_pct"])
        best = max(chosen, key=lambda c: c["tower_vs_matmul_pct"])
        verdicts.append({
            "target": f"{ARCHS[arch]['name']} image tower >= {limit:g}% of a matmul of its largest shape "
            f"({results[arch]['matmul']['best_gflops']:.0f} GFLOP/s)",
            "status": "PASS" if worst["tower_vs_matmul_pct"] >= limit else "FAIL",
            "detail": f"batch {biggest}: {worst['tower_vs_matmul_pct']:.0f}% ({worst['style']}) .. "
            f"{best['tower_vs_matmul_pct']:.0f}% ({best['style']}), "
            f"{worst['tower_gflops']:.0f}..{best['tower_gflops']:.0f} GFLOP/s",
            "indicative": biggest != 32,
        })  # fmt: skip
    return verdicts


def print_profile(profile: dict) -> None:
    log(f"\n--- processor profile: {profile['style']}, batch {profile['batch']}, {profile['repeats']} runs "
        "(per batch: median, min, % of prepare_points + render)")  # fmt: skip
    if "stages_error" in profile:
        log(f"  stage breakdown failed: {profile['stages_error']}")
    parents = profile.get("parents", {})

    def depth(name: str) -> int:
        base = name[len("(rest of ") : -1] if name.startswith("(rest of ") else None
        level, current = (1 + depth(base)) if base else 0, parents.get(name)
        while current is not None:
            level, current = level + 1, parents.get(current)
        return level

    def emit(name: str) -> None:
        label = "  " * depth(name) + name
        log(f"  {label:<50}{profile['stages_ms'][name]:10.2f} ms {profile['stages_min_ms'][name]:10.2f} ms "
            f"{profile['stages_pct'][name]:6.1f}%")  # fmt: skip
        for child in [n for n in profile["stages_ms"] if parents.get(n) == name]:
            emit(child)
        if f"(rest of {name})" in profile["stages_ms"]:
            emit(f"(rest of {name})")

    for root in ("prepare_points", "render"):
        if root in profile.get("stages_ms", {}):
            emit(root)
    for op in profile.get("top_ops", [])[:8]:
        log(f"    op {op['op']:<37} x{op['calls_per_run']:<5g}{op['self_ms_per_run']:9.2f} ms {op['self_pct']:6.1f}%")


# ---------------------------------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--arch",
        nargs="+",
        choices=list(ARCHS),
        default=None,
        help="architectures (default: vit-b32 vit-b16; --quick: vit-b32)",
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=None, help="default: 1 8 32 (--quick: 8)")
    parser.add_argument("--styles", nargs="+", choices=STYLES, default=list(STYLES))
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed end-to-end repeats per cell (default: 5, 3 or 2 by the cell's cost)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="warm-up runs per cell (one chunk for big batches)")
    parser.add_argument("--text-repeats", type=int, default=3, help="cold text-encoder repeats per style")
    parser.add_argument(
        "--text-tokens",
        type=int,
        default=None,
        help="prompt length in tokens (default: estimated CLIP BPE length per style; 77 = pad to max)",
    )
    parser.add_argument("--quick", action="store_true", help="batch 8, one architecture, fewer repeats (~2 min)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--dtype",
        nargs="+",
        choices=DTYPE_CHOICES,
        default=["fp32"],
        help="one dtype, or several to compare tower variants (auto: the package's dtype policy)",
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=BACKENDS,
        default=["torch"],
        help="image tower backend(s); compile = torch.compile, onnxruntime needs the [onnx] extra",
    )
    parser.add_argument(
        "--agreement-clouds",
        type=int,
        default=16,
        help="benchmark clouds added to the agreement set of the variant comparison",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa", help="CLIP attention implementation")
    parser.add_argument(
        "--max-images-per-batch",
        type=int,
        default=None,
        help="config.max_images_per_batch, the tower's chunk size (default: the package default)",
    )
    parser.add_argument("--compile", action="store_true", help="model.compile_image_tower() first, when available")
    parser.add_argument("--no-profile", action="store_true", help="skip the processor profile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--before-after",
        action="store_true",
        help="only the image tower: chunks of 8 images (before) against fixed per-cloud calls (after)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="JSON path; '{arch}' becomes the architecture (one file each), else one combined file "
        "(default: benchmarks/results/inference_{arch}.json, inference_{arch}_quick.json with --quick)",
    )
    args = parser.parse_args(argv)
    if args.arch is None:
        args.arch = ["vit-b32"] if args.quick else ["vit-b32", "vit-b16"]
    if args.quick:
        args.arch = args.arch[:1]
    if args.out is None:
        name = "inference_{arch}_quick.json" if args.quick else "inference_{arch}.json"
        args.out = str(REPO_ROOT / "benchmarks" / "results" / name)
    if args.batch_sizes is None:
        args.batch_sizes = [8] if args.quick else [1, 8, 32]
    if any(b < 1 for b in args.batch_sizes) or (args.repeats is not None and args.repeats < 1):
        parser.error("batch sizes and repeats must be positive")
    return args


def run_arch(arch, args, device, dtype, paths, profiles: list, profile: bool) -> dict:
    """Every style and batch size of one architecture; appends the processor profiles when `profile`. The tower's
    yardstick is a product of its largest shape (see `tower_matmul_shape`), measured before and after the cells (the
    best of both: load only ever slows a run)."""
    start = time.perf_counter()
    model = build_model(arch, args.styles[0], device, dtype, args.seed, args.attn)
    build_s = time.perf_counter() - start
    use_style(model, args.styles[0], args.text_tokens, args.attn, args.max_images_per_batch)
    shape = tower_matmul_shape(model)
    matmul = matmul_throughput(device, dtype, shape, 5)
    log(f"{shape[0]}x{shape[1]} @ {shape[1]}x{shape[2]} {dtype_name(dtype)} on {matmul['copies']} worker(s): best "
        f"{matmul['best_gflops']:.0f} GFLOP/s, median {matmul['median_gflops']:.0f}")  # fmt: skip
    flops = tower_flops_per_image(model.config.clip_config.vision_config, model.config.clip_config.projection_dim)
    counted = counted_tower_flops(model, device)
    if args.compile or args.backend == ["compile"]:
        model.compile_image_tower()
    if args.backend == ["onnxruntime"]:
        from pointclip_hf.onnx_image_tower import use_onnx_image_tower

        use_onnx_image_tower(model)
    attn = model.clip.config._attn_implementation
    log(f"\n{ARCHS[arch]['name']}: built in {build_s:.1f} s, attention {attn}, tower "
        f"{flops['total'] / 1e9:.2f} GFLOP/image analytic, {(counted or float('nan')) / 1e9:.2f} counted by "
        "FlopCounterMode (which does not count the CPU flash-attention kernel)")  # fmt: skip
    result = {"name": ARCHS[arch]["name"], "build_s": build_s, "flops_per_image": flops,
              "flops_per_image_counted": counted, "attn_implementation": attn, "text": {}, "cells": []}  # fmt: skip
    for style in args.styles:
        processor = use_style(model, style, args.text_tokens, args.attn, args.max_images_per_batch)
        text = measure_text(model, processor, device, args.text_repeats)
        result["text"][style] = text
        log(f"  {style}: text cold {1000 * text['cold_s']['median']:.1f} ms / {text['labels']} labels "
            f"({text['tokens_per_prompt']} tokens/prompt), cached {1000 * text['cached_s']['median']:.3f} ms, "
            f"text-tower calls cached {text['cached_text_tower_calls']:g}")  # fmt: skip
        for batch in args.batch_sizes:
            cell = measure_cell(model, processor, paths, batch, device, args, flops["total"], matmul["best_gflops"])
            cell["style"] = style
            result["cells"].append(cell)
            e2e = cell["stages_s"]["e2e"]
            log(f"    B={batch:<3} e2e {1000 * e2e['median'] / batch:8.1f} ms/cloud (x{e2e['repeats']}, "
                f"±{e2e['spread_pct']:.0f}%), tower {cell['tower_gflops']:.0f} GFLOP/s, outside tower "
                f"{cell['outside_tower_pct']['median']:.2f}%, proc {1000 * cell['proc_s']['median'] / batch:.2f} "
                f"ms/cloud, peak RSS {cell['memory']['peak_rss_mib']:.0f} MiB, "
                f"load {cell['load_avg_before']:.1f}->{cell['load_avg_after']:.1f}")  # fmt: skip
        if profile and not args.no_profile:
            clouds = [np.load(path) for path in paths[: max(args.batch_sizes)]]
            profiles.append(profile_processor(processor.feature_extractor, clouds, device, 3 if args.quick else 7))
    matmul["start_best_gflops"] = matmul["best_gflops"]
    matmul["end_best_gflops"] = matmul_throughput(device, dtype, shape, 5)["best_gflops"]
    matmul["best_gflops"] = max(matmul["start_best_gflops"], matmul["end_best_gflops"])
    for cell in result["cells"]:
        cell["tower_vs_matmul_pct"] = 100.0 * cell["tower_gflops"] / matmul["best_gflops"]
    result["matmul"] = matmul
    return result


def tower_before_batch_invariance(model: PointCLIPModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """The image-tower path before the batch-invariance change: all images of the batch in chunks of 8 (CPU)."""
    images = pixel_values.flatten(0, 1)
    chunks = [model.clip.get_image_features(pixel_values=chunk).pooler_output for chunk in images.split(8)]
    return torch.cat(chunks).reshape(*pixel_values.shape[:2], -1)


def compare_tower_calls(args, device, dtype) -> int:
    """Before/after of the fixed-shape tower calls: ms per cloud, interleaved, median of the repeats."""
    rows = []
    for arch in args.arch:
        model = build_model(arch, "pointclip_v1", device, dtype, args.seed, args.attn)
        for batch in args.batch_sizes:
            pixel_values = torch.rand(batch, model.config.num_views, 3, 224, 224, device=device, dtype=dtype)
            paths = {"before": lambda m=model, p=pixel_values: tower_before_batch_invariance(m, p),
                     "after": lambda m=model, p=pixel_values: m.get_view_features(p)}  # fmt: skip
            times = {name: [] for name in paths}
            with torch.inference_mode():
                for run in paths.values():
                    run()
                for _ in range(args.repeats or 3):
                    for name, run in paths.items():
                        start = time.perf_counter()
                        run()
                        synchronize(device)
                        times[name].append(time.perf_counter() - start)
            before, after = (1000 * statistics.median(times[name]) / batch for name in paths)
            rows.append((ARCHS[arch]["name"], batch, before, after))
            log(f"{ARCHS[arch]['name']:<9} batch {batch:>3}: before {before:8.1f} ms/cloud, after {after:8.1f} "
                f"ms/cloud, after/before {after / before:.3f}")  # fmt: skip
    log("\n| tower | batch | before ms/cloud | after ms/cloud | after/before |\n|---|---|---|---|---|")
    for name, batch, before, after in rows:
        log(f"| {name} | {batch} | {before:.1f} | {after:.1f} | {after / before:.3f} |")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.before_after:
        device = torch.device("cpu" if args.device == "auto" and not torch.cuda.is_available() else
                              ("cuda" if args.device == "auto" else args.device))  # fmt: skip
        return compare_tower_calls(args, device, resolve_dtype(args.dtype[0], device))
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))  # fmt: skip
    if len(args.dtype) > 1 or len(args.backend) > 1:
        return _compare_variants(args, device)
    dtype = resolve_dtype(args.dtype[0], device)
    args.dtype = dtype_name(dtype)
    started = time.perf_counter()
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "pointclip_hf": getattr(pointclip_hf, "__version__", None), "platform": platform.platform(),
        "processor": cpu_description(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "dtype": args.dtype, "raw_points": NUM_RAW_POINTS, "args": vars(args), "load_avg_start": load_average(),
    }  # fmt: skip
    log(f"PointCLIP inference benchmark: {meta['processor']}, {meta['torch_threads']} threads, device {device}, "
        f"{args.dtype}, torch {torch.__version__}, transformers {transformers.__version__}")  # fmt: skip
    log(
        f"archs {args.arch}, styles {args.styles}, batch sizes {args.batch_sizes}, "
        f"load average {meta['load_avg_start']}"
    )

    results: dict = {}
    profiles: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="pointclip-bench-") as tmp:
        paths = write_clouds(Path(tmp), max(args.batch_sizes), args.seed)
        for index, arch in enumerate(args.arch):
            results[arch] = run_arch(arch, args, device, dtype, paths, profiles, index == 0)
    for arch in args.arch:
        print_table(arch, results[arch]["cells"])
    for profile in profiles:
        print_profile(profile)

    verdicts = evaluate_targets(results)
    log("\n=== targets")
    for verdict in verdicts:
        log(f"  {verdict['status']:<5} {verdict['target']}: {verdict['detail']}")
    meta["load_avg_end"] = load_average()
    meta["wall_s"] = time.perf_counter() - started
    log(f"\nwall time {meta['wall_s']:.0f} s, load average {meta['load_avg_start']} -> {meta['load_avg_end']}")

    payload = {"meta": meta, "processor_profiles": profiles}
    if "{arch}" in args.out:
        for arch in args.arch:
            path = Path(args.out.replace("{arch}", arch))
            own = [v for v in verdicts if ARCHS[arch]["name"] in v["target"]]
            _write_json(path, {**payload, "results": {arch: results[arch]}, "targets": own})
    else:
        _write_json(Path(args.out), {**payload, "results": results, "targets": verdicts})
    return 0


def _compare_variants(args, device) -> int:
    log(f"Image-tower variants: {cpu_description()}, {torch.get_num_threads()} threads, device {device}, dtypes "
        f"{args.dtype}, backends {args.backend}, load average {load_average()}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="pointclip-bench-") as tmp:
        paths = write_clouds(Path(tmp), max(args.batch_sizes[0], args.agreement_clouds), args.seed)
        rows = compare_variants(args, device, sys.modules[__name__], paths, list(MODELNET40))
    log(f"load average at the end {load_average()}")
    if "{arch}" in args.out:
        args.out = str(REPO_ROOT / "benchmarks" / "results" / "tower_variants.json")
    _write_json(Path(args.out), {"args": vars(args), "rows": rows})
    return 0


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    log(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
