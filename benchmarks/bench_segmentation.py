"""Part-segmentation speed per cloud of 2,048 points: our projection against the reference's (the official
`Extractor.mv_proj` when `--official` names the clones described in `official_projection.py`, else the re-implementation
below, operation for operation), timed interleaved for `--pairs` rounds (medians); and end to end with a randomly
initialised ViT-B/16 CLIP (projection + image tower + head; the part-prompt embeddings are cached, as the pipeline
does). Also prints the golden differences of both projections in the reference's (transposed) mode and the on-object
fractions, and the CPU, thread count, dtype (float32) and load average.

    python benchmarks/bench_segmentation.py [--official /tmp/official] [--clouds 4] [--reference-clouds 1]
                                            [--pairs 7] [--device cpu] [--threads N]
"""

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from machine import header, interleaved, load_average
from official_projection import official_projections
from transformers import CLIPConfig

from pointclip_hf import PointCLIPConfig, PointCLIPForZeroShotPartSegmentation, render_part_views
from pointclip_hf.model.projection_part_segmentation import _to_view_frames, render_part_depth

FIXTURE = Path(__file__).parent.parent / "tests" / "fixtures" / "v2_part_segmentation.npz"
PART_STYLE = "pointclip_v2_part_segmentation"


def reference_projection(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference `Realistic_Projection.get_img` loop, step by step: dense 224x224x112 grid per view written with
    `index_put`, `MaxPool3d((5, 11, 11))`, a 1->3 channel 5x5x5 Gaussian `Conv3d`, max over depth, normalisation,
    and the transposed visibility lookup.

    Returns images `[B*V, 224, 224]`, is_seen `[B*V, N]` and point_loc `[B*V, N, 2]`."""
    cam = _to_view_frames(points).flatten(0, 1)
    maps, num_points, _ = cam.shape
    upper, lower = cam.amax(dim=1), cam.amin(dim=1)
    scaled = (cam - ((upper + lower) / 2)[:, None]) / (upper - lower).amax(dim=-1)[:, None, None] * 2
    x, y = scaled[..., 0] * 0.7, scaled[..., 1] * 0.7
    _x, _y = torch.ceil((x + 1) / 2 * 224).clip(1, 222), torch.ceil((y + 1) / 2 * 224).clip(1, 222)
    _z = ((scaled[..., 2] + 1) / 2 + 0.3) / 1.3 * 110
    z_int, _z = _z.ceil(), _z.clip(1, 110)
    batch_index = torch.arange(maps).repeat_interleave(num_points)
    grid = torch.zeros(maps, 112, 224, 224, device=points.device)
    grid = grid.index_put((batch_index, z_int.flatten().long(), _y.flatten().long(), _x.flatten().long()), _z.flatten())
    grid = grid.permute(0, 1, 3, 2)
    pooled = F.max_pool3d(grid.unsqueeze(1), (5, 11, 11), stride=1, padding=(2, 5, 5))
    smoothed = F.conv3d(pooled, _reference_kernel(points.device).repeat(3, 1, 1, 1, 1), padding=2)
    image = smoothed.amax(dim=2)
    peak = image.amax(dim=(-2, -1))
    image = 1 - image / peak[:, :, None, None]
    grid = 1 - smoothed / peak[:, :, None, None, None]
    depth = z_int.clip(1, 109).flatten().long()
    point_depth = grid[batch_index, 0, depth, _y.flatten().long(), _x.flatten().long()].view(maps, num_points)
    from_image = image[batch_index, 0, _y.flatten().long(), _x.flatten().long()].view(maps, num_points)
    is_seen = ((from_image - point_depth).abs() < 0.1).float()
    return image[:, 0], is_seen, torch.stack([_y, _x], dim=-1)


def _reference_kernel(device) -> torch.Tensor:
    offsets = torch.arange(5, dtype=torch.float32) - 2
    plane = torch.outer(torch.exp(-(offsets**2) / 2), torch.exp(-(offsets**2) / 2))
    kernel = (plane / plane.sum())[None] * torch.exp(-(offsets**2) / 8)[:, None, None]
    return (kernel / kernel.sum())[None, None].to(device)


def vit_b16_model(device: str) -> PointCLIPForZeroShotPartSegmentation:
    clip_config = CLIPConfig(
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=16),
        projection_dim=512,
    )  # fmt: skip
    config = PointCLIPConfig(clip_config=clip_config, clip_model_name_or_path=None,
                             projection_style="pointclip_v2_part_segmentation")  # fmt: skip
    torch.manual_seed(0)
    return PointCLIPForZeroShotPartSegmentation(config).eval().to(device)


def interleaved_medians(runs: dict, pairs: int, device: str) -> dict[str, float]:
    """Median seconds of each run, the runs interleaved round by round."""
    times = interleaved({name: lambda run=run: (run(), synchronize(device)) for name, run in runs.items()}, pairs)
    return {name: float(np.median(values)) for name, values in times.items()}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(function, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def golden_report(golden: dict, device: str) -> None:
    points = torch.from_numpy(golden["points"]).to(device)
    ours = render_part_depth(points, transposed_lookup=True)
    images, is_seen, point_loc = reference_projection(points[:1])
    ours_pixels = ours.pixels.flatten(0, 1).long()
    for name, (got, seen, loc) in {
        "ours (transposed mode)": (ours.images.flatten(0, 1), ours.visible.flatten(0, 1), ours_pixels),
        "reference re-implementation (cloud 0)": (images, is_seen.bool(), point_loc.long()),
    }.items():
        count = got.shape[0]
        difference = (got.cpu() - torch.from_numpy(golden["img_224"][:count])).abs()
        seen_agree = (seen.cpu() == torch.from_numpy(golden["is_seen"][:count])).float().mean().item()
        loc_equal = torch.equal(loc.cpu(), torch.from_numpy(golden["point_loc"][:count]).long())
        print(f"golden {name}: max |image diff| {difference.max().item():.2e}, within 1e-5 "
              f"{(difference <= 1e-5).float().mean().item():.6f}, is_seen agree {seen_agree:.6f}, "
              f"point_loc equal {loc_equal}")  # fmt: skip
    correct = render_part_depth(points)
    for name, views in {"correct (default)": correct, "transposed (reference)": ours}.items():
        b = torch.arange(views.images.shape[0])[:, None, None]
        v = torch.arange(views.images.shape[1])[None, :, None]
        on_object = views.images[b, v, views.pixels[..., 0].int(), views.pixels[..., 1].int()] < 1
        print(f"on-object lookups, {name}: all points {on_object.float().mean().item():.4f}, visible points "
              f"{on_object[views.visible].float().mean().item():.4f}")  # fmt: skip


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--official", help="folder holding the PointCLIP_V2 clone (default: the re-implementation)")
    parser.add_argument("--clouds", type=int, default=4)
    parser.add_argument("--reference-clouds", type=int, default=1, help="clouds for the (slow) reference loop")
    parser.add_argument("--pairs", type=int, default=7, help="interleaved rounds of ours and the reference")
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end repeats")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)  # the official convolutions carry trainable weights
    print(f"{header()}; {torch.get_num_threads()} threads; device {args.device}")
    golden = dict(np.load(FIXTURE))
    golden_report(golden, args.device)
    generator = torch.Generator().manual_seed(0)
    clouds = torch.randn(args.clouds, 2048, 3, generator=generator)
    clouds = (clouds / clouds.norm(dim=-1).amax(dim=1)[:, None, None]).to(args.device)
    if args.official:
        reference_name, reference = "official Extractor.mv_proj", official_projections(args.official)[PART_STYLE]
    else:
        reference_name, reference = "reference loop (re-implemented)", reference_projection
    few = clouds[: args.reference_clouds]
    medians = interleaved_medians({"ours": lambda: render_part_views(few), "reference": lambda: reference(few)},
                                  args.pairs, args.device)  # fmt: skip
    model = vit_b16_model(args.device)
    text = F.normalize(torch.randn(4, 512, generator=generator), dim=-1).to(args.device)

    def end_to_end():
        views = render_part_views(clouds)
        pixel_values = views.images[:, :, None].expand(-1, -1, 3, -1, -1)
        model(pixel_values=pixel_values, point_pixels=views.pixels, point_visible=views.visible, text_embeds=text)

    total = timed(end_to_end, args.repeats, args.device) / args.clouds
    ours, reference_s = (medians[name] / len(few) for name in ("ours", "reference"))
    print(f"\n{len(few)} cloud(s) of 2,048 points, medians of {args.pairs} interleaved pairs, load {load_average()}")
    print(f"{'':44s} {'s / cloud':>10s}")
    print(f"{'projection, ' + reference_name:44s} {reference_s:10.3f}")
    print(f"{'projection, ours':44s} {ours:10.3f}   speed-up {reference_s / ours:.1f}x")
    print(f"{'end to end, ours (ViT-B/16, random weights)':44s} {total:10.3f}   ({args.clouds} clouds)")
    assert math.isfinite(total)


if __name__ == "__main__":
    main()
