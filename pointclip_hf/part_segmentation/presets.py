"""Presets for zero-shot part segmentation on ShapeNetPart: the 16 categories, the dataset's part names, the part
names PointCLIP V2 prompts with, and its searched per-category view weights (`zeroshot_seg/best_param.py`)."""

from dataclasses import dataclass

# Category order = the `label` ids of the ShapeNetPart h5 files; each category's parts are consecutive global `pid`s.
SHAPENET_PART_CATEGORIES: tuple[str, ...] = (
    "airplane", "bag", "cap", "car", "chair", "earphone", "guitar", "knife",
    "lamp", "laptop", "motorbike", "mug", "pistol", "rocket", "skateboard", "table",
)  # fmt: skip

# The dataset's own part names, in `pid` order (50 in all).
SHAPENET_PART_NAMES: dict[str, tuple[str, ...]] = {
    "airplane": ("body", "wing", "tail", "engine"),
    "bag": ("handle", "body"),
    "cap": ("panels", "peak"),
    "car": ("roof", "hood", "wheel", "body"),
    "chair": ("back", "seat", "leg", "arm"),
    "earphone": ("earphone", "headband", "data wire"),
    "guitar": ("head", "neck", "body"),
    "knife": ("blade", "handle"),
    "lamp": ("base", "lampshade", "canopy", "tube"),
    "laptop": ("keyboard", "screen"),
    "motorbike": ("gas tank", "seat", "wheel", "handle", "light", "frame"),
    "mug": ("handle", "cup"),
    "pistol": ("barrel", "handle", "trigger and guard"),
    "rocket": ("body", "fin", "nose"),
    "skateboard": ("wheel", "deck", "belt for foot"),
    "table": ("desktop", "leg", "drawer"),
}

# The part names the reference prompts with (`cat2part`). Its lamp has only 2 of the dataset's 4 parts, so its lamp
# figure can never predict "canopy" or "tube"; here lamp uses all 4.
REFERENCE_PART_PROMPT_NAMES: dict[str, tuple[str, ...]] = {
    "airplane": ("body", "wing", "tail", "engine or frame"),
    "bag": ("handle", "body"),
    "cap": ("panels or crown", "visor or peak"),
    "car": ("roof", "hood", "wheel or tire", "body"),
    "chair": ("back", "seat pad", "leg", "armrest"),
    "earphone": ("earcup", "headband", "data wire"),
    "guitar": ("head or tuners", "neck", "body"),
    "knife": ("blade", "handle"),
    "lamp": ("leg or wire", "lampshade", "canopy", "support or tube of wire"),
    "laptop": ("keyboard", "screen or monitor"),
    "motorbike": ("gas tank", "seat", "wheel", "handles or handlebars", "light", "engine or frame"),
    "mug": ("handle", "cup"),
    "pistol": ("barrel", "handle", "trigger and guard"),
    "rocket": ("body", "fin", "nose cone"),
    "skateboard": ("wheel", "deck", "belt for foot"),
    "table": ("desktop", "leg or support", "drawer"),
}

# The reference's searched view weights (ViT-B/16, searched on the test split), views in projection order.
REFERENCE_VIEW_WEIGHTS: dict[str, tuple[float, ...]] = {
    "airplane": (0.75, 0.75, 0.25, 0.25, 0.25, 0.50, 1.00, 0.25, 0.25, 0.25),
    "bag": (0.75, 0.75, 0.25, 0.75, 1.00, 0.25, 1.00, 0.50, 0.25, 0.25),
    "cap": (1.0,) * 10,
    "car": (0.75, 0.75, 0.25, 0.25, 0.25, 0.75, 0.25, 0.75, 1.00, 0.25),
    "chair": (1.0,) * 10,
    "earphone": (0.75, 0.75, 0.25, 0.25, 0.25, 0.25, 0.75, 0.50, 0.25, 0.50),
    "guitar": (1.0,) * 10,
    "knife": (1.0,) * 10,
    "lamp": (1.0,) * 10,
    "laptop": (1.0,) * 10,
    "motorbike": (0.75, 0.75, 0.25, 0.25, 0.50, 0.75, 0.25, 0.75, 1.00, 0.25),
    "mug": (1.0,) * 10,
    "pistol": (0.75, 0.75, 0.25, 0.25, 0.25, 1.00, 0.25, 1.00, 0.75, 0.25),
    "rocket": (0.75, 0.75, 0.25, 0.25, 0.50, 1.00, 0.25, 0.50, 0.25, 0.75),
    "skateboard": (0.75, 0.75, 0.25, 0.50, 0.25, 1.00, 0.50, 0.25, 0.75, 1.00),
    "table": (1.0,) * 10,
}

# The ShapeNetPart figures of the reference's README (ViT-B/16, transposed lookup, tuned on the test split).
REFERENCE_CATEGORY_IOU: dict[str, float] = {
    "airplane": 33.5, "bag": 60.4, "cap": 52.8, "chair": 51.5, "earphone": 56.5, "guitar": 71.5, "knife": 66.7,
    "lamp": 44.6, "laptop": 61.6, "motorbike": 31.5, "mug": 48.0, "pistol": 46.0, "rocket": 49.6, "skateboard": 43.9,
    "table": 61.1,
}  # fmt: skip


@dataclass(frozen=True)
class PartPreset:
    r"""
    What to segment a ShapeNetPart category with.

    Args:
        category (`str`):
            The category, also the object name in the prompts.
        parts (`tuple[str, ...]`):
            The part names to prompt with, in the dataset's part order.
        view_weights (`tuple[float, ...]`):
            One weight per view.
        first_part_id (`int`):
            The global `pid` of the category's first part.
    """

    category: str
    parts: tuple[str, ...]
    view_weights: tuple[float, ...]
    first_part_id: int


def part_preset(category: str) -> PartPreset:
    """The [`PartPreset`] of a ShapeNetPart category (the reference's prompt names and view weights)."""
    if category not in SHAPENET_PART_NAMES:
        raise ValueError(f"Unknown ShapeNetPart category {category!r}; valid: {', '.join(SHAPENET_PART_CATEGORIES)}.")
    first = 0
    for name in SHAPENET_PART_CATEGORIES[: SHAPENET_PART_CATEGORIES.index(category)]:
        first += len(SHAPENET_PART_NAMES[name])
    return PartPreset(category, REFERENCE_PART_PROMPT_NAMES[category], REFERENCE_VIEW_WEIGHTS[category], first)
