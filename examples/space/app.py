"""PointCLIP as a Hugging Face Space: the same app as `pointclip demo`.

The Space variable `POINTCLIP_MODEL` picks the checkpoint (a CLIP or PointCLIP Hub id; default
openai/clip-vit-base-patch16). Example clouds are the `.npy` files beside this file.
"""

import os
from pathlib import Path

from pointclip_hf.demo import DemoModels, build_demo, example_files

MODEL = os.environ.get("POINTCLIP_MODEL", "openai/clip-vit-base-patch16")

demo = build_demo(DemoModels(MODEL), examples=example_files(Path(__file__).resolve().parent) or example_files())

if __name__ == "__main__":
    demo.launch()
