"""The names users choose from, importable without torch: the command line builds its parser from them before
anything heavy loads. Each name's meaning lives with the code that acts on it (`dtype_policy`, `point_ops`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DTYPE_CHOICES = ["auto", *DTYPE_ALIASES.values(), *DTYPE_ALIASES]
SAMPLING_METHODS = ("random", "fps", "first")
DEFAULT_SAMPLING = "random"
UP_AXES = ("y", "-y", "z", "-z", "x", "-x")
CLASSIFICATION_STYLES = ("pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2")
PROJECTION_STYLES = (*CLASSIFICATION_STYLES, "pointclip_v2_part_segmentation")  # the keys of projection.STYLES


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` -> `"bfloat16"`: the name recorded in reports, predictions headers and JSON output."""
    return str(dtype).removeprefix("torch.")
