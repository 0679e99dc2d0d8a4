"""PointCLIP as a Hugging Face Space: the same app as `pointclip demo`.

The Space variable `POINTCLIP_MODEL` picks the checkpoint (a CLIP or PointCLIP Hub id; default
openai/clip-vit-base-patch16). The example clouds are those shipped with the package.
"""

import os

from pointclip_hf.demo import DemoModels, build_demo

MODEL = os.environ.get("POINTCLIP_MODEL", "openai/clip-vit-base-patch16")

demo = build_demo(DemoModels(MODEL))

if __name__ == "__main__":
    demo.launch()
