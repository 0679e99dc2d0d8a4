"""Bad-input figures (issue 10): fuzzing counts of the processor and the logits reader by outcome, the cost of the
cloud checks, and the cost of the resume fingerprint's CLIP-weights hash at ViT-B/16 size.

    python benchmarks/bench_bad_input.py [--arrays 2000] [--files 2000] [--seed 0]
"""

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel

from pointclip_hf import PointCLIPFeatureExtractor
from pointclip_hf.model.feature_extraction_pointclip import check_point_clouds
from pointclip_hf.model.weights_fingerprint import tensors_sha256
from pointclip_hf.tuning import load_logits

DOCUMENTED = (ValueError, TypeError, OSError)
DTYPES = [np.float16, np.float32, np.float64, np.int32, np.dtype(">f4"), np.bool_]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, 1e-30, 1e18, 1e20, 3e38, 12345.678, -1.0]


def random_array(rng: np.random.Generator) -> np.ndarray:
    shape = tuple(int(s) for s in rng.integers(0, 40, rng.integers(1, 4)))
    dtype = DTYPES[rng.integers(len(DTYPES))]
    values = rng.normal(scale=10.0 ** rng.uniform(-25, 25), size=shape)
    if values.size and rng.random() < 0.5:
        values.flat[rng.integers(values.size, size=3)] = rng.choice(SPECIAL, 3)
    if rng.random() < 0.2:
        values = np.full(shape, rng.choice(SPECIAL))
    with np.errstate(all="ignore"):
        array = values.astype(dtype)
    return array[::-1] if array.ndim and rng.random() < 0.3 else array


def fuzz_processor(count: int, rng: np.random.Generator) -> Counter:
    outcomes = Counter()
    for _ in range(count):
        style = ["pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2"][rng.integers(3)]
        processor = PointCLIPFeatureExtractor(style, num_points=32, image_size=32, normalize=bool(rng.random() < 0.7))
        try:
            pixels = processor(random_array(rng))["pixel_values"]
            outcomes["finite result" if torch.isfinite(pixels).all() else "NON-FINITE RESULT"] += 1
        except DOCUMENTED as error:
            outcomes[type(error).__name__ + ("" if "\n" not in str(error) else " (MULTI-LINE)")] += 1
        except Exception as error:  # noqa: BLE001 - what the fuzzing is there to find
            outcomes[f"UNDOCUMENTED {type(error).__name__}"] += 1
    return outcomes


def random_logits_file(rng: np.random.Generator, folder: Path) -> Path:
    valid = {".npy": np.save, ".npz": lambda p, a: np.savez_compressed(p, logits=a)}
    suffix = [".npy", ".npz", ".safetensors"][rng.integers(3)]
    path = folder / f"logits{suffix}"
    if suffix in valid:
        valid[suffix](path, rng.normal(size=(8, 4)).astype(np.float32))
        data = bytearray(path.read_bytes())
    else:
        from safetensors.torch import save

        data = bytearray(save({"logits": torch.randn(8, 4)}))
    for _ in range(rng.integers(1, 6)):  # flip, cut or insert bytes
        position = int(rng.integers(len(data))) if data else 0
        action = rng.integers(3)
        if action == 0 and data:
            data[position] = int(rng.integers(256))
        elif action == 1:
            del data[position:]
        else:
            data[position:position] = rng.bytes(int(rng.integers(1, 16)))
    path.write_bytes(bytes(data))
    return path


def fuzz_logits_files(count: int, rng: np.random.Generator) -> Counter:
    outcomes = Counter()
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(count):
            try:
                load_logits(random_logits_file(rng, Path(folder)))
                outcomes["loaded"] += 1
            except DOCUMENTED as error:
                outcomes[type(error).__name__ + ("" if "\n" not in str(error) else " (MULTI-LINE)")] += 1
            except Exception as error:  # noqa: BLE001 - what the fuzzing is there to find
                outcomes[f"UNDOCUMENTED {type(error).__name__}"] += 1
    return outcomes


def timed(function, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arrays", type=int, default=2000)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"processor, {args.arrays} random arrays: {dict(fuzz_processor(args.arrays, rng))}")
    print(f"load_logits, {args.files} damaged files: {dict(fuzz_logits_files(args.files, rng))}")

    clouds = torch.rand(32, 1024, 3)
    seconds = timed(lambda: check_point_clouds(clouds, normalize=True))
    print(f"check_point_clouds on 32 clouds of 1024 points: {seconds * 1e3:.2f} ms")
    config = CLIPConfig(vision_config=dict(patch_size=16), projection_dim=512)  # ViT-B/16 sizes
    clip = CLIPModel(config)
    num_parameters = sum(p.numel() for p in clip.parameters())
    seconds = timed(lambda: tensors_sha256(clip.state_dict()), repeats=3)
    print(f"SHA-256 of the CLIP weights ({num_parameters / 1e6:.0f} M fp32 parameters): {seconds:.2f} s")


if __name__ == "__main__":
    main()
