"""Draw the depth views PointCLIP feeds to CLIP, for each shipped example cloud and each projection style.

    python examples/render_depth_views.py --out-dir views/

Writes one PNG grid per cloud and style; no model weights are needed.
"""

import argparse
from pathlib import Path

from pointclip_hf import PointCLIPFeatureExtractor, render_views
from pointclip_hf.visualization import projection_views_image

EXAMPLES = Path(__file__).parent


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", default="views")
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for style in ("pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2"):
        processor = PointCLIPFeatureExtractor(projection_style=style)
        files = sorted(EXAMPLES.glob("*.npy"))
        views = render_views(processor.prepare_points([str(f) for f in files]), style)  # [clouds, V, H, W]
        for path, cloud_views in zip(files, views):
            target = out_dir / f"{path.stem}_{style}.png"
            projection_views_image(cloud_views, style).save(target)
            print(f"wrote {target}")


if __name__ == "__main__":
    main()
