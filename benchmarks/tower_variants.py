"""Image-tower variants side by side (dtype x backend), interleaved: the `--dtype A B --backend C D` mode of
`bench_inference.py`.

For each architecture one random full-size CLIP is built in float32 and copied into every variant (`float32`,
`bfloat16`, `float16`) x backend:

    torch             eager, SDPA attention (on the CPU its flash kernel)
    sdpa-math         SDPA restricted to its math kernel
    eager-attention   transformers' eager attention (matmul, softmax, matmul)
    channels-last     the patch-embedding convolution's weight in channels-last layout
    compile           `model.compile_image_tower()` (`torch.compile`, fuses LayerNorm, quick-GELU, residual adds)
    torch-int8        `torch.ao.quantization.quantize_dynamic` of the tower's linear layers (int8 weights, per-call
                      int8 activations; fbgemm/oneDNN kernels: VNNI or AMX where the CPU has them)
    onnxruntime       `use_onnx_image_tower` (float32 only)
    onnxruntime-int8  the same graph after ONNX Runtime's dynamic int8 quantisation

Only what wins is shipped (see benchmarks/README.md). Per variant it prints, from one run with the variants' repeats
interleaved round by round:

    ms/cloud    median `get_view_features` time for a batch of `--batch-sizes[0]` clouds, per cloud
    speed-up    against float32 torch eager
    GF/s %mm    analytic tower FLOP/s, and its share of the yardstick in the same dtype: a product of the tower's
                largest shape per call (`bench_inference.tower_matmul_shape`) run on every CPU worker at once
    rel err     ||f - f_fp32|| / ||f_fp32|| over all view features of the agreement clouds
    min cos     the lowest cosine between a view feature and its float32 counterpart
    top-1       share of agreement clouds whose top ModelNet40 label (40 labels, the style's prompt, each variant's own
                text tower) equals float32's

Agreement clouds: the 3 shipped examples, the 2 reference-fixture clouds, 8 synthetic shapes of the test datasets
(cube, sphere, disc, line) and `--agreement-clouds` rotated, jittered copies of the examples. With random CLIP
weights the 40 logits of a cloud lie close together, so top-1 agreement is a pessimistic figure for trained weights.
"""

import copy
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import interleaved
from torch.nn.attention import SDPBackend, sdpa_kernel

REPO_ROOT = Path(__file__).resolve().parent.parent
from pointclip_hf.dtype_policy import resolve_dtype  # noqa: E402
from pointclip_hf.model.choices import dtype_name  # noqa: E402
from pointclip_hf.model.pipeline_pointclip import label_embeddings  # noqa: E402
from pointclip_hf.testing_utils import synthetic_cloud  # noqa: E402

BACKENDS = (
    "torch",
    "sdpa-math",
    "eager-attention",
    "channels-last",
    "compile",
    "torch-int8",
    "onnxruntime",
    "onnxruntime-int8",
)


def agreement_clouds(paths: list[Path]) -> list[np.ndarray]:
    """Examples, reference-fixture clouds, synthetic test shapes, then the benchmark's own clouds at `paths`."""
    clouds = [np.load(REPO_ROOT / "examples" / f"{name}.npy")[:, :3] for name in ("table", "mug", "teddy_bear")]
    with np.load(REPO_ROOT / "tests" / "fixtures" / "reference_subset.npz") as fixtures:
        clouds += list(fixtures["points"])
    rng = np.random.default_rng(0)
    clouds += [synthetic_cloud(kind % 4, rng, 1024) for kind in range(8)]
    clouds += [np.load(path) for path in paths]
    return [cloud.astype(np.float32) for cloud in clouds]


def build_variants(base, names: list[tuple[str, str]], cache_dir: str) -> dict:
    """`{(dtype name, backend): model}`: copies of the float32 `base` model; unsupported pairs are skipped."""
    from pointclip_hf.onnx_image_tower import use_onnx_image_tower

    variants = {}
    for dtype, backend in names:
        if (backend.startswith("onnxruntime") or backend == "torch-int8") and dtype != torch.float32:
            print(f"  skipped {dtype_name(dtype)} + {backend}: it quantises a float32 tower only", flush=True)
            continue
        model = copy.deepcopy(base).to(dtype=dtype).eval()
        if backend == "compile":
            model.compile_image_tower()
        elif backend == "eager-attention":
            model.set_attn_implementation("eager")
        elif backend == "channels-last":
            model.clip.vision_model.embeddings.patch_embedding.to(memory_format=torch.channels_last)
        elif backend == "torch-int8":
            linear_layers = {torch.nn.Linear}
            torch.ao.quantization.quantize_dynamic(model.clip.vision_model, linear_layers, torch.qint8, inplace=True)
        elif backend.startswith("onnxruntime"):
            use_onnx_image_tower(model, cache_dir=cache_dir)
            if backend == "onnxruntime-int8":
                quantize_tower(model.clip.vision_model)
        variants[(dtype_name(dtype), backend)] = model
    return variants


def quantize_tower(tower) -> None:
    """Swap the session of an `OnnxImageTower` for one on its dynamically int8-quantised graph."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = tower.onnx_path.with_name("image_tower.int8.onnx")
    if not quantized.exists():
        quantize_dynamic(tower.onnx_path, quantized, weight_type=QuantType.QInt8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # called from the single-threaded CPU workers, as the float32 session
    tower.session = onnxruntime.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])


def view_features(key: tuple[str, str], model, pixel_values: torch.Tensor) -> torch.Tensor:
    """`model.get_view_features(pixel_values)`, with SDPA's math kernel for the `sdpa-math` variant (the default CPU
    choice is its flash kernel); the kernel flags are process-wide, so the workers see them."""
    if key[1] != "sdpa-math":
        return model.get_view_features(pixel_values)
    with sdpa_kernel(SDPBackend.MATH):
        return model.get_view_features(pixel_values)


def interleaved_times(variants: dict, pixel_values: torch.Tensor, repeats: int, synchronize) -> dict:
    """Seconds per `get_view_features(pixel_values)` call, each round running every variant once (the order reversed
    every other round; see `machine.interleaved`), after one warm-up (and compilation) call each."""

    def call(key, model):
        view_features(key, model, pixel_values)
        synchronize()

    with torch.inference_mode():
        return interleaved({key: lambda k=key, m=model: call(k, m) for key, model in variants.items()}, repeats)


def agreement(variants: dict, processor, clouds: list[np.ndarray], labels: list[str]) -> dict:
    """Relative error, minimum cosine and top-1 agreement of every variant against float32 torch."""
    pixel_values = processor(point_clouds=clouds)["pixel_values"]
    outputs = {}
    with torch.inference_mode():
        for key, model in variants.items():
            features = torch.cat([view_features(key, model, group) for group in pixel_values.split(4)]).float()
            text = label_embeddings(model, processor, labels)
            logits = model(view_features=features.to(model.dtype), text_embeds=text).logits.float()
            outputs[key] = (features, logits.argmax(-1))
    reference, reference_top1 = outputs[("float32", "torch")]
    return {
        key: {
            "relative_error": ((features - reference).norm() / reference.norm()).item(),
            "min_cosine": torch.nn.functional.cosine_similarity(features, reference, dim=-1).min().item(),
            "top1_agreement": (top1 == reference_top1).float().mean().item(),
        }
        for key, (features, top1) in outputs.items()
    }


def compare_variants(args, device, bench, paths, labels) -> list:
    """The variant table for every architecture of `args`; returns its rows as dicts. `bench` is `bench_inference`
    (model building, the yardstick matmul of the tower's largest shape, FLOP counts)."""
    dtypes = list(dict.fromkeys(resolve_dtype(name, device) for name in args.dtype))
    names = [(torch.float32, "torch")] + [(d, b) for d in dtypes for b in args.backend]
    names = list(dict.fromkeys(names))
    style, batch = args.styles[0], args.batch_sizes[0]
    rows, yardsticks = [], {}
    for arch in args.arch:
        base = bench.build_model(arch, style, device, torch.float32, args.seed, args.attn)
        processor = bench.use_style(base, style, args.text_tokens, args.attn, args.max_images_per_batch)
        vision = base.config.clip_config.vision_config
        flops = bench.tower_flops_per_image(vision, base.config.clip_config.projection_dim)["total"]
        shape = bench.tower_matmul_shape(base)
        matmul = {dtype_name(d): bench.matmul_throughput(device, d, shape, 5)["best_gflops"] for d in dtypes}
        yardsticks[arch] = {"shape": shape, "gflops": matmul}
        progress(f"{arch}: yardstick {shape[0]}x{shape[1]} @ {shape[1]}x{shape[2]} GFLOP/s {matmul}")
        with tempfile.TemporaryDirectory(prefix="pointclip-onnx-") as cache_dir:
            variants = build_variants(base, names, cache_dir)
            progress(f"{arch}: built {', '.join(map(str, variants))}")
            for model in variants.values():
                model.processor = processor
            clouds = agreement_clouds(paths[: args.agreement_clouds])
            scores = agreement(variants, processor, clouds, labels)
            progress(f"{arch}: agreement on {len(clouds)} clouds {scores}")
            pixel_values = processor(point_clouds=[np.load(p) for p in paths[:batch]])["pixel_values"]
            times = interleaved_times(variants, pixel_values, args.repeats or 5, lambda: synchronize(device))
            progress(f"{arch}: times {times}")
        reference_s = statistics.median(times[("float32", "torch")])
        for (dtype, backend), seconds in times.items():
            median = statistics.median(seconds)
            gflops = flops * batch * base.config.num_views / median / 1e9
            rows.append({"arch": arch, "style": style, "batch": batch, "dtype": dtype, "backend": backend,
                         "threads": torch.get_num_threads(), "ms_per_cloud": 1000 * median / batch,
                         "spread_pct": 100 * (max(seconds) - min(seconds)) / median,
                         "speedup": reference_s / median, "gflops": gflops,
                         "matmul_pct": 100 * gflops / matmul[dtype] if dtype in matmul else None,
                         "clouds": len(clouds), **scores[(dtype, backend)]})  # fmt: skip
    print_variants(rows, yardsticks)
    return rows


def progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_variants(rows: list[dict], yardsticks: dict) -> None:
    for arch, yardstick in yardsticks.items():
        (m, k, n), limits = yardstick["shape"], ", ".join(f"{d} {g:.0f}" for d, g in yardstick["gflops"].items())
        print(f"\n{arch}: yardstick {m}x{k} @ {k}x{n} (the tower's largest product per call) on the workers: {limits}"
              " GFLOP/s")  # fmt: skip
    print(f"=== image-tower variants (interleaved; {torch.get_num_threads()} threads)")
    print(
        "| arch | batch | dtype | backend | ms/cloud (±%) | speed-up | GFLOP/s (% of mm) | rel err | min cos | top-1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        share = "" if row["matmul_pct"] is None else f" ({row['matmul_pct']:.0f}%)"
        print(f"| {row['arch']} | {row['batch']} | {row['dtype']} | {row['backend']} | {row['ms_per_cloud']:.1f} "
              f"(±{row['spread_pct']:.0f}%) | {row['speedup']:.2f}x | {row['gflops']:.0f}{share} | "
              f"{row['relative_error']:.1e} | {row['min_cosine']:.5f} | "
              f"{100 * row['top1_agreement']:.1f}% of {row['clouds']} |")  # fmt: skip
