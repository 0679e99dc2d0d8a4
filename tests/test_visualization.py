"""The depth-view grid: two rows of captioned views, no empty cells for 6 or 10 views."""

import numpy as np
import pytest
import torch
from PIL import Image

from pointclip_hf.model.projection import render_views, view_names
from pointclip_hf.part_segmentation.visualization import PART_PALETTE, part_views_image
from pointclip_hf.visualization import save_confusion_matrix_image, views_to_grid

PADDING = 4


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(start), int(stop - start)) for start, stop in zip(edges[::2], edges[1::2])]


@pytest.mark.parametrize("num_views, columns", [(6, 3), (10, 5)])
def test_views_fill_two_rows_without_holes(num_views, columns):
    size = 40
    views = torch.zeros(num_views, size, size)
    views[:, 0, 0] = 1.0  # black views (empty pixels) on the white page
    pixels = np.asarray(views_to_grid(views, captions=[""] * num_views, padding=PADDING))
    black = pixels == 0
    row_runs, column_runs = _runs(black.any(axis=1)), _runs(black.any(axis=0))
    assert [length for _, length in row_runs] == [size] * 2
    assert [length for _, length in column_runs] == [size] * columns
    assert black.sum() == num_views * (size * size - 1)  # every cell holds a view: no holes
    gaps = pixels[:, column_runs[0][0] + size : column_runs[1][0]]
    assert set(np.unique(gaps)) <= {160, 255}  # grey frames on a white page between the views
    assert pixels.shape[0] - (row_runs[1][0] + size) > PADDING  # a caption line under the last row


def test_captions_are_drawn_under_each_view():
    views = torch.zeros(6, 32, 32)
    blank = np.asarray(views_to_grid(views, captions=[""] * 6))
    captioned = np.asarray(views_to_grid(views, captions=["top"] + [""] * 5))
    changed_rows, changed_cols = np.nonzero(blank != captioned)
    assert changed_rows.size and changed_rows.min() >= PADDING + 32  # below the first view
    assert changed_cols.max() < PADDING + 32  # within its column
    assert not np.array_equal(blank, np.asarray(views_to_grid(views)))  # default captions "view 1", ...


def test_each_view_keeps_its_own_scale_and_background():
    views = torch.zeros(2, 8, 8)
    views[0, 2, 3] = 0.5
    views[1, 4, 4] = 7.0
    pixels = np.asarray(views_to_grid(views, captions=["", ""], columns=2, padding=PADDING))
    first = pixels[PADDING : PADDING + 8, PADDING : PADDING + 8]
    second = pixels[PADDING : PADDING + 8, 2 * PADDING + 8 : 2 * PADDING + 16]
    assert first[2, 3] == 255 and second[4, 4] == 255
    assert (first == 0).sum() == 63 and (second == 0).sum() == 63


@pytest.mark.parametrize("bad_call, message", [
    (lambda: views_to_grid(torch.zeros(6, 8)), "views must be"),
    (lambda: views_to_grid(torch.zeros(6, 8, 8), captions=["a"]), "1 captions for 6 views"),
])  # fmt: skip
def test_bad_arguments_are_named(bad_call, message):
    with pytest.raises(ValueError, match=message):
        bad_call()


def test_title_goes_above_the_views():
    views = torch.zeros(6, 32, 32)
    untitled = np.asarray(views_to_grid(views, captions=[""] * 6))
    titled = np.asarray(views_to_grid(views, captions=[""] * 6, title="pointclip_v1 depth views"))
    extra = titled.shape[0] - untitled.shape[0]
    assert extra > PADDING and (titled[: extra + PADDING] < 128).any()  # dark title text in the new band
    assert np.array_equal(titled[extra:], untitled)  # the views below it unchanged


@pytest.mark.parametrize("style, names", [
    ("pointclip_v1", ["back", "left", "front", "right", "top", "bottom"]),
    ("pointclip_v2", ["front-right above", "back-right above", "back-left above", "front-left above", "front above",
                      "right above", "back above", "left above", "bottom", "top"]),
])  # fmt: skip
def test_views_are_named_by_where_they_look_from(style, names):
    assert view_names(style) == names


def test_the_top_view_sees_the_top_of_a_tall_cloud():
    column = torch.rand(1, 2048, 3) * torch.tensor([0.2, 1.0, 0.2]) - torch.tensor([0.1, 0.5, 0.1])
    # a thin upright column: small seen from the top, tall from the front
    for style, front in (("pointclip_v1", "front"), ("pointclip_v2", "front above")):
        views = render_views(column, style)[0]
        footprints = (views != views[0, 0, 0]).float().mean(dim=(1, 2))
        assert footprints[view_names(style).index("top")] < footprints[view_names(style).index(front)]


def test_confusion_matrix_has_a_colour_bar(tmp_path):
    path = tmp_path / "matrix.png"
    save_confusion_matrix_image(np.zeros((3, 3), dtype=int), ["a", "b", "c"], path)  # all-white cells
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    darkest = np.abs(pixels - np.array([8, 48, 107])).sum(axis=-1) <= 6
    rows, columns = np.nonzero(darkest)  # only the bar's top holds the darkest blue
    assert rows.size and columns.min() > pixels.shape[1] // 2
    bar = pixels[rows.min() :, int(np.median(columns))]
    blue = bar[:, 2] - bar[:, 0]
    assert blue[0] > 90 and np.all(np.diff(blue[: blue.argmin() + 1]) <= 1)  # dark at the top, fading downwards


def test_part_points_are_dots_big_enough_to_see():
    images = torch.ones(2, 224, 224)
    pixels = torch.tensor([[[100, 100], [0, 223]], [[50, 60], [223, 0]]])
    image = np.asarray(part_views_image(images, pixels, torch.ones(2, 2, dtype=torch.bool), [0, 1], ["seat", "leg"]))
    seat = np.all(image == PART_PALETTE[0], axis=-1)
    rows, columns = np.nonzero(seat)
    assert seat.sum() >= 2 * 9 and rows.max() - rows.min() >= 4  # each point a dot, not a single pixel
    assert np.all(image == PART_PALETTE[1], axis=-1).sum() >= 2 * 4  # dots at the edges stay inside the view
