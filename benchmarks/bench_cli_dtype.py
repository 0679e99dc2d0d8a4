"""`pointclip classify` as a whole process, `--dtype auto` against `--dtype float32`.

Builds a full-size CLIP with random weights (ViT-B/32 or ViT-B/16 image tower, ViT-B text tower, 49,408-token
vocabulary; the byte-level tokenizer of `pointclip_hf.testing_utils`) in a temporary folder, writes `--clouds`
synthetic clouds of 2,048 points, and runs `pointclip classify FOLDER --labels <40 ModelNet40 names> --json` in fresh
processes, the two dtypes in turn (`--pairs` rounds, the order reversed every other round). It prints the medians of
the wall times, the median of the per-round ratios float32 / auto, what `auto` resolved to, and how the top labels and
scores of the two dtypes compare, with the CPU, thread count and load average.

    python benchmarks/bench_cli_dtype.py [--arch vit-b32] [--clouds 32] [--pairs 5] [--threads 2]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import header, load_average, write_results
from transformers import CLIPModel

from pointclip_hf.testing_utils import build_tiny_tokenizer, random_clip_config, synthetic_cloud

LABELS = (
    "airplane,bathtub,bed,bench,bookshelf,bottle,bowl,car,chair,cone,cup,curtain,desk,door,dresser,flower pot,"
    "glass box,guitar,keyboard,lamp,laptop,mantel,monitor,night stand,person,piano,plant,radio,range hood,sink,sofa,"
    "stairs,stool,table,tent,toilet,tv stand,vase,wardrobe,xbox"
)
PATCH_SIZES = {"vit-b32": 32, "vit-b16": 16}


def write_model(folder: Path, arch: str) -> None:
    config = random_clip_config("vit-b", num_layers=12, image_size=224, patch_size=PATCH_SIZES[arch], vocab_size=49408)
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(folder)
    build_tiny_tokenizer().save_pretrained(folder)


def write_clouds(folder: Path, count: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        np.save(folder / f"{index:03d}.npy", synthetic_cloud(index % 4, rng, num_points=2048))


def classify(model: Path, clouds: Path, dtype: str, threads: int) -> tuple[float, list[dict]]:
    command = [sys.executable, "-m", "pointclip_hf.cli", "--threads", str(threads), "-q", "classify", str(clouds),
               "--labels", LABELS, "--model", str(model), "--json", "--dtype", dtype]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pointclip classify --dtype {dtype} failed: {done.stderr.strip()[-500:]}")
    return seconds, json.loads(done.stdout)


def agreement(exact: list[dict], fast: list[dict]) -> dict:
    top = [(a["predictions"][0]["label"], b["predictions"][0]["label"]) for a, b in zip(exact, fast)]
    changes = [abs(p["score"] - {q["label"]: q["score"] for q in b["predictions"]}[p["label"]])
               for a, b in zip(exact, fast) for p in a["predictions"]]  # fmt: skip
    return {"top1_equal": sum(x == y for x, y in top), "clouds": len(top), "max_score_change": max(changes)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(PATCH_SIZES), default="vit-b32")
    parser.add_argument("--clouds", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cli_dtype.json"))
    args = parser.parse_args(argv)
    print(f"{header()}; threads {args.threads}; {args.arch}; {args.clouds} clouds x 40 labels", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        model, clouds = Path(scratch) / "model", Path(scratch) / "clouds"
        write_model(model, args.arch)
        write_clouds(clouds, args.clouds)
        load_before = load_average()
        times, outputs = {"float32": [], "auto": []}, {}
        for round_index in range(args.pairs):
            for dtype in ("float32", "auto") if round_index % 2 == 0 else ("auto", "float32"):
                seconds, outputs[dtype] = classify(model, clouds, dtype, args.threads)
                times[dtype].append(seconds)
    resolved = outputs["auto"][0]["dtype"]
    row = {
        "arch": args.arch, "clouds": args.clouds, "labels": 40, "threads": args.threads, "pairs": args.pairs,
        "auto_resolves_to": resolved, "float32_s": statistics.median(times["float32"]),
        "auto_s": statistics.median(times["auto"]),
        "speedup": statistics.median(f / a for f, a in zip(times["float32"], times["auto"])),
        **agreement(outputs["float32"], outputs["auto"]), "load_before": load_before, "load_after": load_average(),
    }  # fmt: skip
    columns = ["arch", "clouds", "threads", "float32 s", "auto s (resolves to)", "float32 / auto", "top-1 equal",
               "max score change", "load"]  # fmt: skip
    print("| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|")
    print(f"| {row['arch']} | {row['clouds']} | {row['threads']} | {row['float32_s']:.1f} | {row['auto_s']:.1f} "
          f"({resolved}) | {row['speedup']:.2f}x | {row['top1_equal']} of {row['clouds']} | "
          f"{row['max_score_change']:.3f} | {row['load_before']}-{row['load_after']} |")  # fmt: skip
    write_results(args.out, [row])
    return 0


if __name__ == "__main__":
    sys.exit(main())
