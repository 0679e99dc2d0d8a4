"""Pictures a person can look at: the depth views of a cloud as one grid image."""

import torch
from PIL import Image


def views_to_grid(views: torch.Tensor, columns: int = 5, padding: int = 4) -> Image.Image:
    """
    Depth views `[V, H, W]` (as from `render_views`) -> one 8-bit grayscale grid image. Each view is scaled by its
    own maximum so near and far surfaces stay distinguishable; V1 maps keep their black background (0 = empty),
    V2 maps their white one.
    """
    if views.ndim != 3:
        raise ValueError(f"views must be [V, H, W], got shape {tuple(views.shape)}.")
    views = views.detach().float().cpu()
    peak = views.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    pixels = (views / peak).clamp(0, 1).mul(255).round().to(torch.uint8)
    count, height, width = pixels.shape
    columns = min(columns, count)
    rows = -(-count // columns)
    grid = torch.full((rows * (height + padding) + padding, columns * (width + padding) + padding), 128, dtype=torch.uint8)
    for index in range(count):  # a handful of views, drawn once for a picture
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = pixels[index]
    return Image.fromarray(grid.numpy(), mode="L")
