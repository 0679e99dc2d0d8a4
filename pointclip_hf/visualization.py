"""Pictures a person can look at: the depth views of a cloud as one grid image, and a confusion matrix as a PNG."""

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .atomic_files import write_file_atomically
from .model.projection import view_names
from .model.prompts import display_label

_MAX_NAMED_CLASSES = 40
_MAX_COUNTED_CLASSES = 20
_MIN_COUNTED_CELL = 24
_PAD = 6
_DARK_BLUE = (8, 48, 107)
_COLOUR_BAR_WIDTH = 12


def views_to_grid(
    views: torch.Tensor,
    captions: Sequence[str] | None = None,
    columns: int | None = None,
    padding: int = 4,
    title: str | None = None,
) -> Image.Image:
    """
    Lay depth views out as one 8-bit grayscale grid image on a white page, each view framed in grey with its caption
    below and the title, if any, above. By default the views fill two rows (3x2 for 6 views, 5x2 for 10). Each view
    is scaled by its own maximum so near and far surfaces stay distinguishable; V1 maps keep their black background
    (0 = empty), V2 maps their white one.

    Args:
        views (`torch.Tensor` of shape `(views, height, width)`):
            Depth maps, as from `render_views`.
        captions (`Sequence[str]`, *optional*):
            One line per view; defaults to `"view 1"`, `"view 2"`, ...
        columns (`int`, *optional*):
            Views per grid row; defaults to half the views, rounded up.
        padding (`int`, *optional*, defaults to 4):
            White pixels between and around the views.
        title (`str`, *optional*):
            A line above the views, e.g. the projection's name.

    Returns:
        `PIL.Image.Image`: the grid, mode `"L"`.
    """
    if views.ndim != 3:
        raise ValueError(f"views must be [V, H, W], got shape {tuple(views.shape)}.")
    count, height, width = views.shape
    captions = list(captions) if captions is not None else [f"view {index + 1}" for index in range(count)]
    columns = min(columns or -(-count // 2), count)
    if len(captions) != count or columns < 1:
        raise ValueError(f"views_to_grid needs one caption per view and at least one column, got {len(captions)} "
                         f"captions for {count} views and {columns} columns.")  # fmt: skip
    font = _default_font(max(10, min(height, width) // 10))
    caption_height = int(math.ceil(ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), "Ag", font=font)[3])) + 2
    cell_width, cell_height = width + padding, height + caption_height + padding
    rows = -(-count // columns)
    title_height = caption_height + padding if title else 0
    grid = Image.new("L", (columns * cell_width + padding, title_height + rows * cell_height + padding), 255)
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text(((grid.width - draw.textlength(title, font=font)) / 2, padding), title, fill=0, font=font)
    for index, (view, caption) in enumerate(zip(_views_to_pixels(views), captions)):  # a few views, drawn once
        left = padding + (index % columns) * cell_width
        top = title_height + padding + (index // columns) * cell_height
        grid.paste(Image.fromarray(view, mode="L"), (left, top))
        draw.rectangle([left - 1, top - 1, left + width, top + height], outline=160)
        text_left = left + (width - draw.textlength(caption, font=font)) / 2
        draw.text((text_left, top + height + 1), caption, fill=0, font=font)
    return grid


def projection_views_image(views: torch.Tensor, style: str) -> Image.Image:
    """
    The depth views of one cloud as [`views_to_grid`] lays them out, titled with the projection `style` and each
    captioned with where it looks from (`"front"`, `"left"`, ..., see `view_names`).

    Args:
        views (`torch.Tensor` of shape `(views, height, width)`):
            Depth maps of `style`, as from `render_views`.
        style (`str`):
            The projection that rendered them.

    Returns:
        `PIL.Image.Image`: the grid, mode `"L"`.
    """
    return views_to_grid(views, captions=view_names(style), title=f"{style} depth views")


def _views_to_pixels(views: torch.Tensor) -> np.ndarray:
    """Depth maps `[V, H, W]` -> uint8 `[V, H, W]`, each scaled by its own maximum."""
    views = views.detach().float().cpu()
    peak = views.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return (views / peak).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def _default_font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def save_confusion_matrix_image(
    matrix, label_names: Sequence[str], path: str | os.PathLike, title: str | None = None
) -> None:
    """
    Draw a confusion matrix with Pillow and write it as a PNG: cells shaded by row-normalised counts (white 0 to dark
    blue 1, read off the colour bar on the right), class names on both axes when there are at most 40 classes,
    counts in the cells when they are large enough (at most 20 classes).

    Args:
        matrix (`np.ndarray` or nested lists of shape `(classes, classes)`):
            Counts, rows the true classes and columns the predictions.
        label_names (`Sequence[str]`):
            The class names, in the order of the rows.
        path (`str` or `os.PathLike`):
            The PNG file, written atomically; its folder must exist.
        title (`str`, *optional*):
            A line of text above the matrix.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    names = [display_label(str(name)) for name in label_names] if matrix.shape[0] <= _MAX_NAMED_CLASSES else []
    layout = _ConfusionLayout.measure(matrix.shape[0], names, title or "")
    image = Image.new("RGB", (layout.width, layout.height), "white")
    draw = _draw_cells(image, fractions, layout)
    _draw_axes(image, draw, names, title or "", layout)
    _draw_colour_bar(image, draw, layout)
    if layout.classes <= _MAX_COUNTED_CLASSES and layout.cell >= _MIN_COUNTED_CELL:
        _draw_counts(draw, matrix, fractions, layout)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_file_atomically(Path(path), buffer.getvalue())


@dataclass
class _ConfusionLayout:
    """Where the parts of a confusion-matrix image go: the matrix's top-left corner is `(left, top)`."""

    classes: int
    cell: int
    font: ImageFont.ImageFont
    probe: ImageDraw.ImageDraw
    text_height: int
    left: int
    top: int
    width: int
    height: int

    @classmethod
    def measure(cls, classes: int, names: list[str], title: str) -> "_ConfusionLayout":
        cell = int(np.clip(640 // max(classes, 1), 2, 40))
        font = _default_font(13)
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        text_height = int(math.ceil(probe.textbbox((0, 0), "Ag", font=font)[3]))
        name_width = int(math.ceil(max((probe.textlength(name, font=font) for name in names), default=0)))
        left = _PAD + text_height + _PAD + name_width + _PAD
        top = _PAD + text_height + _PAD + text_height + _PAD + name_width + _PAD
        bar = _PAD + _COLOUR_BAR_WIDTH + _PAD + int(probe.textlength("100%", font=font)) + _PAD
        width = max(left + classes * cell + bar, _PAD + int(probe.textlength(title, font=font)) + _PAD)
        return cls(classes, cell, font, probe, text_height, left, top, width, top + classes * cell + _PAD)

    def text_width(self, text: str) -> float:
        return self.probe.textlength(text, font=self.font)

    def vertical_text(self, text: str, min_width: int = 0) -> Image.Image:
        """`text` on a white strip turned to read bottom-up."""
        strip = Image.new("RGB", (max(int(self.text_width(text)), min_width) + 2, self.text_height + 2), "white")
        ImageDraw.Draw(strip).text((1, 0), text, fill="black", font=self.font)
        return strip.rotate(90, expand=True)


def _draw_cells(image: Image.Image, fractions: np.ndarray, layout: _ConfusionLayout) -> ImageDraw.ImageDraw:
    side = layout.classes * layout.cell
    colours = 255 + (np.array(_DARK_BLUE, dtype=np.float64) - 255) * fractions[..., None]
    cells = Image.fromarray(colours.round().astype(np.uint8), "RGB").resize((side, side), Image.NEAREST)
    image.paste(cells, (layout.left, layout.top))
    draw = ImageDraw.Draw(image)
    draw.rectangle([layout.left - 1, layout.top - 1, layout.left + side, layout.top + side], outline=(150, 150, 150))
    return draw


def _draw_axes(
    image: Image.Image, draw: ImageDraw.ImageDraw, names: list[str], title: str, layout: _ConfusionLayout
) -> None:
    font, left, top, cell = layout.font, layout.left, layout.top, layout.cell
    draw.text((_PAD, _PAD), title, fill="black", font=font)
    draw.text((left, _PAD + layout.text_height + _PAD), "predicted", fill="black", font=font)
    image.paste(layout.vertical_text("true"), (_PAD, top))
    offset = (cell - layout.text_height) // 2
    for i, name in enumerate(names):
        row_x = left - _PAD - int(layout.text_width(name))
        draw.text((row_x, top + i * cell + offset), name, fill="black", font=font)
        column = layout.vertical_text(name, min_width=1)
        image.paste(column, (left + i * cell + offset, top - _PAD - column.height))


def _draw_colour_bar(image: Image.Image, draw: ImageDraw.ImageDraw, layout: _ConfusionLayout) -> None:
    """The shading scale beside the matrix: the share of a true class's clouds, 100% at the top, 0% at the bottom."""
    side = layout.classes * layout.cell
    shares = np.linspace(1.0, 0.0, side)[:, None, None]
    colours = 255 + (np.array(_DARK_BLUE, dtype=np.float64) - 255) * shares
    strip = np.broadcast_to(colours, (side, _COLOUR_BAR_WIDTH, 3)).round().astype(np.uint8)
    left = layout.left + side + _PAD
    image.paste(Image.fromarray(np.ascontiguousarray(strip), "RGB"), (left, layout.top))
    draw.rectangle([left - 1, layout.top - 1, left + _COLOUR_BAR_WIDTH, layout.top + side], outline=(150, 150, 150))
    text_left = left + _COLOUR_BAR_WIDTH + _PAD
    draw.text((text_left, layout.top), "100%", fill="black", font=layout.font)
    draw.text((text_left, layout.top + side - layout.text_height), "0%", fill="black", font=layout.font)


def _draw_counts(
    draw: ImageDraw.ImageDraw, matrix: np.ndarray, fractions: np.ndarray, layout: _ConfusionLayout
) -> None:
    cell = layout.cell
    for i in range(layout.classes):
        for j in range(layout.classes):
            text = str(int(matrix[i, j]))
            x = layout.left + j * cell + (cell - layout.text_width(text)) / 2
            y = layout.top + i * cell + (cell - layout.text_height) / 2
            fill = "white" if fractions[i, j] > 0.5 else "black"
            draw.text((x, y), text, fill=fill, font=layout.font)
