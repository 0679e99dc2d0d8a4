"""Part segmentations a person can look at: a coloured PLY (a colour per part, the legend in its header) and the views
of the cloud with each visible point painted in its part's colour."""

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from plyfile import PlyData, PlyElement

from ..atomic_files import write_file_atomically

# Distinct colours (Tableau 10, then a few more); part i gets PART_PALETTE[i % len].
PART_PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
_PAD = 4
_PART_VERTEX = np.dtype(
    [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("part", "i4")]
)


def part_colors(label_ids) -> np.ndarray:
    """`(points,)` part ids -> `(points, 3)` uint8 colours."""
    palette = np.asarray(PART_PALETTE, dtype=np.uint8)
    return palette[np.asarray(label_ids) % len(palette)]


def part_legend(parts) -> list[str]:
    """One `"index name r g b"` line per part."""
    colors = part_colors(np.arange(len(parts)))
    return [f"{index} {name} {r} {g} {b}" for index, (name, (r, g, b)) in enumerate(zip(parts, colors.tolist()))]


def write_part_ply(path: str | os.PathLike, points, label_ids, parts) -> None:
    r"""
    Write an ASCII PLY with `x y z red green blue part` per point and the legend as header comments.

    Args:
        path (`str` or `os.PathLike`):
            The file, written atomically.
        points (`np.ndarray` of shape `(points, 3)`):
            Coordinates.
        label_ids (`np.ndarray` of shape `(points,)`):
            The part of each point.
        parts (`list[str]`):
            Part names.
    """
    points, label_ids = np.asarray(points, dtype=np.float32)[:, :3], np.asarray(label_ids, dtype=np.int64)
    vertices = np.empty(len(points), dtype=_PART_VERTEX)
    vertices["x"], vertices["y"], vertices["z"] = points.T
    vertices["red"], vertices["green"], vertices["blue"] = part_colors(label_ids).T
    vertices["part"] = label_ids
    ply = PlyData([PlyElement.describe(vertices, "vertex")], text=True,
                  comments=[f"part {line}" for line in part_legend(parts)])  # fmt: skip
    buffer = io.BytesIO()
    ply.write(buffer)
    write_file_atomically(Path(path), buffer.getvalue())


def part_views_image(images: torch.Tensor, pixels: torch.Tensor, visible: torch.Tensor, label_ids, parts,
                     columns: int = 5) -> Image.Image:  # fmt: skip
    r"""
    The views of one cloud in gray, each visible point painted as a dot (radius 2 pixels in a 224-pixel view) in its
    part's colour, and a legend below.

    Args:
        images (`torch.Tensor` of shape `(views, S, S)`):
            Depth views (white background).
        pixels (integer `torch.Tensor` of shape `(views, points, 2)`):
            (row, column) of each point in each view.
        visible (`torch.Tensor` of shape `(views, points)`):
            Whether each point is visible in each view.
        label_ids (`np.ndarray` of shape `(points,)`):
            The part of each point.
        parts (`list[str]`):
            Part names.
        columns (`int`, *optional*, defaults to 5):
            Views per row.

    Returns:
        `PIL.Image.Image` in mode `"RGB"`.
    """
    gray = (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    canvas = gray[..., None].expand(-1, -1, -1, 3).clone()
    views, points = visible.shape
    view_index = torch.arange(views)[:, None].expand(views, points)
    colors = torch.from_numpy(part_colors(label_ids)).expand(views, -1, -1)
    seen = visible.cpu().bool()
    rows, cols, size = pixels.cpu()[..., 0][seen], pixels.cpu()[..., 1][seen], canvas.shape[1]
    dot = _dot_offsets(max(1, size // 112))
    rows = (rows[:, None] + dot[:, 0]).clamp(0, size - 1)
    cols = (cols[:, None] + dot[:, 1]).clamp(0, canvas.shape[2] - 1)
    canvas[view_index[seen][:, None], rows, cols] = colors[seen][:, None]
    return _with_legend(_tile(canvas.numpy(), columns), parts)


def _dot_offsets(radius: int) -> torch.Tensor:
    """The `(row, column)` offsets of a round dot of `radius` pixels, so that each point is big enough to see."""
    steps = torch.arange(-radius, radius + 1)
    offsets = torch.cartesian_prod(steps, steps)
    return offsets[(offsets**2).sum(dim=1) <= radius**2 + radius]


def _tile(views: np.ndarray, columns: int) -> Image.Image:
    count, height, width, _ = views.shape
    columns = min(columns, count)
    rows = -(-count // columns)
    grid = np.full((rows * (height + _PAD) + _PAD, columns * (width + _PAD) + _PAD, 3), 128, dtype=np.uint8)
    for index, view in enumerate(views):  # ten views drawn once for a picture
        top, left = _PAD + (index // columns) * (height + _PAD), _PAD + (index % columns) * (width + _PAD)
        grid[top : top + height, left : left + width] = view
    return Image.fromarray(grid, mode="RGB")


def _with_legend(grid: Image.Image, parts) -> Image.Image:
    font = ImageFont.load_default()
    line = 16
    image = Image.new("RGB", (grid.width, grid.height + line * len(parts) + _PAD), "white")
    image.paste(grid, (0, 0))
    draw = ImageDraw.Draw(image)
    for index, (name, color) in enumerate(zip(parts, part_colors(np.arange(len(parts))).tolist())):
        top = grid.height + _PAD + index * line
        draw.rectangle([_PAD, top, _PAD + 12, top + 12], fill=tuple(color))
        draw.text((_PAD + 18, top), name, fill="black", font=font)
    return image


def save_image(image: Image.Image, path: str | os.PathLike) -> None:
    """Write `image` as a PNG, atomically."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_file_atomically(Path(path), buffer.getvalue())
