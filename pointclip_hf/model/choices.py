"""The names users choose from: dtypes, point sampling methods, up axes and projection styles.

It imports nothing heavy, so the command line builds its parser from it before torch loads. Each name's meaning lives
with the code that acts on it (`dtype_policy`, `feature_extraction_pointclip`, `projection`).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DTYPE_CHOICES = ["auto", *DTYPE_ALIASES.values(), *DTYPE_ALIASES]
SAMPLING_METHODS = ("random", "fps", "first")
DEFAULT_SAMPLING = "random"
UP_AXES = ("y", "-y", "z", "-z", "x", "-x")
CLASSIFICATION_STYLES = ("pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2")
PART_SEGMENTATION_STYLE = "pointclip_v2_part_segmentation"
PROJECTION_STYLES = (*CLASSIFICATION_STYLES, PART_SEGMENTATION_STYLE)  # the keys of projection.STYLES


def dtype_name(dtype: "torch.dtype") -> str:
    """`torch.bfloat16` -> `"bfloat16"`: the name recorded in reports, predictions headers and JSON output."""
    return str(dtype).removeprefix("torch.")
