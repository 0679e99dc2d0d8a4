"""Adapter-training throughput, with and without cached CLIP features, for a tiny CLIP and a ViT-B/16-sized CLIP.

Both CLIPs have random weights and are built offline (no download). Each run trains the 10-view inter-view adapter with
`pointclip_hf.training.train_adapter` on random clouds:

- "rendered": `augment=True` (the reference recipe): every step augments, renders the 10 views and runs CLIP.
- "cached":   `augment=False`: CLIP features are computed once ("encode" row), then the epochs run the adapter only.

Throughput is training samples per second of epoch time (from the training history); the one-off encoding of the
cached path is reported separately. Example:

    python benchmarks/bench_train.py                       # tiny and ViT-B/16, CPU
    python benchmarks/bench_train.py --models vit-b16 --device cuda --clouds 320 --batch-size 32
"""

import argparse
import os
import time

import numpy as np
import torch
from datasets import Array2D, ClassLabel, Dataset, Features
from transformers import CLIPConfig

from pointclip_hf import PointCLIPConfig, PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor  # noqa: E402
from pointclip_hf.testing_utils import build_tiny_tokenizer, random_clip_config  # noqa: E402
from pointclip_hf.training import TrainingConfig, train_adapter  # noqa: E402

STYLE = "pointclip_v1_fewshot"  # 10 views
LABELS = [f"class_{i}" for i in range(10)]


def clip_config(name: str) -> CLIPConfig:
    if name == "tiny":
        return random_clip_config()
    if name == "vit-b16":
        return random_clip_config("vit-b", num_layers=12, image_size=224, patch_size=16)
    raise ValueError(f"Unknown model {name!r}.")


def build_model(name: str, num_points: int) -> PointCLIPModel:
    config = PointCLIPConfig(
        clip_config=clip_config(name),
        clip_model_name_or_path=None,
        projection_style=STYLE,
        use_adapter=True,
        label_names=LABELS,
    )
    torch.manual_seed(0)
    model = PointCLIPModel(config).eval()
    image_size = config.clip_config.vision_config.image_size
    feature_extractor = PointCLIPFeatureExtractor(projection_style=STYLE, num_points=num_points, image_size=image_size)
    model.processor = PointCLIPProcessor(feature_extractor, build_tiny_tokenizer())
    return model


def random_dataset(num_clouds: int, num_points: int) -> Dataset:
    rng = np.random.default_rng(0)
    features = Features({"points": Array2D((None, 3), "float32"), "label": ClassLabel(names=LABELS)})
    return Dataset.from_dict(
        {
            "points": [rng.normal(size=(num_points, 3)).astype(np.float32) for _ in range(num_clouds)],
            "label": [i % len(LABELS) for i in range(num_clouds)],
        },
        features=features,
    )


def measure(model_name, cached, args) -> dict:
    model = build_model(model_name, args.num_points)
    clouds = args.clouds if args.clouds else (64 if model_name == "tiny" else 8)
    batch_size = min(args.batch_size, clouds) if args.batch_size else (32 if model_name == "tiny" else 4)
    epochs = args.epochs if args.epochs else (3 if model_name == "tiny" else 2)
    epochs = epochs if cached else max(1, epochs - 1)
    dataset = random_dataset(clouds, args.num_points)
    config = TrainingConfig(
        epochs=epochs + 1, batch_size=batch_size, augment=not cached, progress=False, device=args.device
    )
    started = time.perf_counter()
    result = train_adapter(model, dataset, None, config)
    total = time.perf_counter() - started
    timed = result.history[1:]  # the first epoch also pays one-off costs (allocator, kernels, thread pools)
    steps_per_epoch = clouds // batch_size
    samples = len(timed) * steps_per_epoch * batch_size
    seconds = sum(record["seconds"] for record in timed)
    return {
        "model": model_name,
        "path": "cached" if cached else "rendered",
        "clouds": clouds,
        "batch": batch_size,
        "epochs timed": len(timed),
        "samples": samples,
        "seconds": seconds,
        "samples/s": samples / seconds,
        "setup s": total - sum(record["seconds"] for record in result.history),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,vit-b16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clouds", type=int, default=None, help="training clouds (default 64 tiny, 8 ViT-B/16)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 tiny, 4 ViT-B/16")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs (one more, untimed, runs first)")
    parser.add_argument("--num-points", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, {args.num_points} points/cloud, {STYLE} (10 views)"
    )
    rows = []
    for model_name in args.models.split(","):
        for cached in (False, True):
            row = measure(model_name, cached, args)
            rows.append(row)
            print(f"  done: {row['model']} {row['path']}: {row['samples/s']:.1f} samples/s", flush=True)
    columns = ["model", "path", "clouds", "batch", "epochs timed", "samples", "seconds", "samples/s", "setup s"]
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        cells = [f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        print("| " + " | ".join(cells) + " |")
    print(
        "\n'setup s': reading and preparing the clouds, text embeddings and, for 'cached', encoding every cloud once."
    )


if __name__ == "__main__":
    main()
