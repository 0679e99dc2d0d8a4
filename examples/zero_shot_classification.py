"""Zero-shot classification of the shipped example clouds with PointCLIP (V1 and V2 projections).

    python examples/zero_shot_classification.py [--model openai/clip-vit-base-patch16]

Needs the CLIP weights from the Hugging Face Hub (or a local CLIP folder passed as --model).
"""

import argparse
from pathlib import Path

from pointclip_hf import PointCLIPModel

LABELS = ["cup", "table", "teddy bear", "chair", "airplane", "lamp", "bottle", "sofa"]
EXAMPLES = Path(__file__).parent


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="openai/clip-vit-base-patch16")
    args = parser.parse_args()
    files = sorted(str(path) for path in EXAMPLES.glob("*.npy"))
    for style in ("pointclip_v1", "pointclip_v2"):
        model = PointCLIPModel.from_pretrained(args.model, projection_style=style)
        print(f"\n{style}:")
        for path, predictions in zip(files, model.classify(files, LABELS, top_k=3)):
            ranked = ", ".join(f"{p['label']} ({p['score']:.2f})" for p in predictions)
            print(f"  {Path(path).name:16s} {ranked}")


if __name__ == "__main__":
    main()
