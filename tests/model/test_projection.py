"""Tests for `pointclip_hf.model.projection`: golden parity with the reference code, shapes, batching and edge cases."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pointclip_hf.model import projection
from pointclip_hf.model.projection import STYLES, ProjectionStyle, get_projection_style, render_views, splat_depth

FIXTURES = Path(__file__).parents[1] / "fixtures"
GOLDEN_KEYS = {"pointclip_v1": "v1_zs_depth", "pointclip_v1_fewshot": "v1_fs_depth", "pointclip_v2": "v2_img_110"}
V1_STYLES = ["pointclip_v1", "pointclip_v1_fewshot"]


@pytest.fixture(scope="module")
def golden():
    with np.load(FIXTURES / "reference_subset.npz") as arrays:
        return {name: torch.from_numpy(arrays[name]) for name in arrays.files}


@pytest.fixture(scope="module")
def clouds(golden):
    return golden["points"]


def _unit_clouds(batch, num_points, seed=0):
    points = torch.randn(batch, num_points, 3, generator=torch.Generator().manual_seed(seed))
    return points / points.norm(dim=-1).amax(dim=1)[:, None, None]


# Golden parity with the unmodified reference code.


@pytest.mark.parametrize("style", V1_STYLES)
def test_v1_matches_reference(golden, clouds, style):
    expected = golden[GOLDEN_KEYS[style]]
    maps = render_views(clouds, style).reshape(expected.shape)
    assert (maps - expected).abs().max().item() <= 1e-5
    assert torch.equal(maps != 0, expected != 0)


def test_v1_zero_shot_is_bit_identical_to_reference(golden, clouds):
    expected = golden["v1_zs_depth"]
    assert torch.equal(render_views(clouds, "pointclip_v1").reshape(expected.shape), expected)


@pytest.mark.parametrize("pixels_per_chunk", [1, 3 * 16 * 16, 1 << 30])
def test_splat_chunking_does_not_change_maps(monkeypatch, pixels_per_chunk):
    points = _unit_clouds(5, 300) + torch.tensor([0.0, 0.0, 1.6])
    expected = splat_depth(points, resolution=16)
    monkeypatch.setattr(projection, "_CPU_PIXELS_PER_CHUNK", pixels_per_chunk)
    assert torch.equal(splat_depth(points, resolution=16), expected)


@pytest.mark.parametrize("style", ["pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2"])
@pytest.mark.parametrize("point_views_per_chunk", [1, 6 * 77, 1 << 30])
def test_point_chunking_does_not_change_maps(monkeypatch, style, point_views_per_chunk):
    # Large clouds are projected a slice of points at a time (memory); whole clouds a few at a time.
    clouds = _unit_clouds(3, 500, seed=1)
    expected = render_views(clouds, style)
    monkeypatch.setattr(projection, "_CPU_POINT_VIEWS_PER_CHUNK", point_views_per_chunk)
    assert torch.equal(render_views(clouds, style), expected)


@pytest.mark.parametrize("style", list(STYLES))
def test_thread_count_does_not_change_maps(style):
    clouds = _unit_clouds(5, 300, seed=2)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected = render_views(clouds, style)
        for threads in (2, 3):
            torch.set_num_threads(threads)
            assert torch.equal(render_views(clouds, style), expected)
            assert torch.equal(render_views(clouds[3:4], style), expected[3:4])
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("style", ["pointclip_v1", "pointclip_v1_fewshot"])
def test_a_splat_is_shared_out_only_when_each_worker_gets_16_clouds(monkeypatch, style):
    groups, render_group = [], projection._render_group

    def counted(points, *args):
        groups.append(len(points))
        return render_group(points, *args)

    monkeypatch.setattr(projection, "_render_group", counted)
    clouds = _unit_clouds(32, 64, seed=3)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected = render_views(clouds, style)
        torch.set_num_threads(2)
        groups.clear()
        assert torch.equal(render_views(clouds[:31], style), expected[:31]) and groups == [31]
        groups.clear()
        assert torch.equal(render_views(clouds, style), expected) and sorted(groups) == [16, 16]
    finally:
        torch.set_num_threads(saved)


def test_part_views_do_not_depend_on_the_thread_count():
    # One cloud's views are shared out among the workers: the pixels and visibility must not change either.
    from pointclip_hf import render_part_views

    cloud = _unit_clouds(1, 300, seed=3)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected = render_part_views(cloud)
        torch.set_num_threads(2)
        assert all(torch.equal(got, want) for got, want in zip(render_part_views(cloud), expected))
    finally:
        torch.set_num_threads(saved)


def test_splat_of_an_empty_batch_is_empty():
    assert splat_depth(torch.zeros(0, 5, 3), resolution=8).shape == (0, 8, 8)


def test_v2_matches_reference(golden, clouds, record_property):
    expected = golden["v2_img_110"][:, 0]
    images = render_views(clouds, "pointclip_v2").reshape(expected.shape)
    within = ((images - expected).abs() <= 1e-5).float().mean().item()
    record_property("v2_fraction_within_1e-5", within)
    print(f"V2 fraction of pixels within 1e-5: {within:.6f}")
    assert within >= 0.999


def test_tiny_splat_matches_reference(golden):
    depth = splat_depth(golden["v1_tiny_points_cam"], resolution=8)
    expected = golden["v1_tiny_depth_8x8"]
    assert (depth - expected).abs().max().item() <= 1e-6
    assert torch.equal(depth != 0, expected != 0)
    assert depth[0, 4, 4].item() == pytest.approx(4 / 3)
    assert depth[0, 6, 3].item() == pytest.approx(1.0)


# Styles, shapes and dtypes.


def test_styles():
    assert set(STYLES) == {"pointclip_v1", "pointclip_v1_fewshot", "pointclip_v2", "pointclip_v2_part_segmentation"}
    assert get_projection_style("pointclip_v1") == ProjectionStyle("pointclip_v1", 6, 128, 0.0)
    assert get_projection_style("pointclip_v1_fewshot") == ProjectionStyle("pointclip_v1_fewshot", 10, 224, 0.0)
    assert get_projection_style("pointclip_v2") == ProjectionStyle("pointclip_v2", 10, 110, 1.0)


def test_unknown_style():
    with pytest.raises(ValueError, match="Unknown projection style 'pointclip_v3'.*pointclip_v1_fewshot"):
        get_projection_style("pointclip_v3")
    with pytest.raises(ValueError, match="Unknown projection style"):
        render_views(_unit_clouds(1, 8), "v2")


@pytest.mark.parametrize("style", list(STYLES))
def test_shape_dtype_and_background(style):
    spec = STYLES[style]
    maps = render_views(_unit_clouds(3, 256), style)
    assert maps.shape == (3, spec.num_views, spec.resolution, spec.resolution)
    assert maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert (maps[..., 0, 0] == spec.background).all()


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes(clouds, style, dtype):
    maps = render_views(clouds.to(dtype), style)
    reference = render_views(clouds, style)
    assert maps.dtype == dtype
    assert maps.shape == reference.shape
    assert torch.isfinite(maps).all()
    if dtype == torch.float64:  # only a few ceil() roundings may flip
        assert ((maps.float() - reference).abs() <= 1e-5).float().mean().item() >= 0.999


# Batching and invariances.


@pytest.mark.parametrize("style", list(STYLES))
def test_batch_matches_single_clouds(clouds, style):
    batch = torch.cat([clouds, _unit_clouds(1, 1024)])
    maps = render_views(batch, style)
    for index in range(batch.shape[0]):
        single = render_views(batch[index : index + 1], style)
        torch.testing.assert_close(maps[index : index + 1], single, atol=1e-6, rtol=0)


@pytest.mark.parametrize("style", list(STYLES))
def test_point_order_does_not_matter(clouds, style):
    if style == "pointclip_v2_part_segmentation":
        pytest.skip("as in the reference, the last point written to a voxel sets its depth")
    permutation = torch.randperm(clouds.shape[1], generator=torch.Generator().manual_seed(0))
    maps = render_views(clouds, style)
    permuted = render_views(clouds[:, permutation], style)
    torch.testing.assert_close(permuted, maps, atol=1e-6, rtol=0)
    assert torch.equal(permuted != 0, maps != 0)


@pytest.mark.parametrize("num_points", [1, 2, 5000])
@pytest.mark.parametrize("style", list(STYLES))
def test_any_number_of_points(style, num_points):
    spec = STYLES[style]
    maps = render_views(_unit_clouds(1, num_points), style)
    assert maps.shape == (1, spec.num_views, spec.resolution, spec.resolution)
    assert torch.isfinite(maps).all()


@pytest.mark.parametrize("style", list(STYLES))
def test_autograd_after_inference_mode(style):
    # The cached view matrices and kernel must not become inference tensors when first built in inference mode.
    projection._view_transforms.cache_clear()
    projection._gaussian_kernel.cache_clear()
    with torch.inference_mode():
        render_views(_unit_clouds(1, 16), style)
    points = _unit_clouds(1, 16).requires_grad_()
    render_views(points, style).sum().backward()
    assert torch.isfinite(points.grad).all()


# Points the camera cannot see (V1).


def test_points_behind_camera_or_out_of_frame_are_dropped():
    visible = torch.tensor([[[0.0, 0.0, 1.0], [0.2, -0.1, 2.0]]])
    behind = [[0.0, 0.0, -1.0], [0.1, 0.1, -1e-12]]
    out_of_frame = [[5.0, 0.0, 1.0], [0.0, -3.0, 1.0], [1.0, 1.0, 1e-9]]
    hidden = torch.tensor([behind + out_of_frame])
    expected = splat_depth(visible, resolution=16)
    assert torch.equal(splat_depth(torch.cat([visible, hidden], dim=1), resolution=16), expected)
    assert torch.equal(splat_depth(hidden, resolution=16), torch.zeros(1, 16, 16))


@pytest.mark.parametrize("style", V1_STYLES)
def test_far_points_do_not_crash(clouds, style):
    # View 0 looks along +z from z = -TRANS: (0, 0, -50) is behind it, (40, 0, 0) and (1e6, 1e6, 1e6) far out of frame.
    far = torch.tensor([[[0.0, 0.0, -50.0], [40.0, 0.0, 0.0], [1e6, 1e6, 1e6]]]).expand(2, -1, -1)
    maps = render_views(torch.cat([clouds, far], dim=1), style)
    expected = render_views(clouds, style)
    assert torch.isfinite(maps).all()
    assert torch.equal(maps[:, 0], expected[:, 0])
    assert ((maps != 0) | (expected == 0)).all()  # extra points never empty a pixel


# Degenerate clouds (V2 would give NaN in the reference).


@pytest.mark.parametrize(
    "points",
    [torch.zeros(1, 1, 3), torch.full((2, 100, 3), 0.3), torch.tensor([[[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]])],
    ids=["single-point", "identical-points", "duplicate-pair"],
)
def test_v2_degenerate_clouds_are_finite(points):
    images = render_views(points, "pointclip_v2")
    assert torch.isfinite(images).all()
    assert ((images >= 0) & (images <= 1)).all()
    assert (images[..., 0, 0] == 1).all()  # white background
    assert (images.amin(dim=(-2, -1)) == 0).all()  # the point itself is the darkest pixel
    torch.testing.assert_close(images[:1], render_views(torch.zeros(1, 1, 3), "pointclip_v2"))


def test_v2_single_cloud(clouds):
    images = render_views(clouds[:1], "pointclip_v2")
    assert images.shape == (1, 10, 110, 110)
    assert torch.isfinite(images).all()


# Input validation.


@pytest.mark.parametrize(
    "points, error, message",
    [
        (torch.zeros(4, 3), ValueError, "rank 2"),
        (torch.zeros(1, 2, 4, 3), ValueError, "rank 4"),
        (torch.zeros(1, 4, 2), ValueError, "3 coordinates in the last dimension"),
        (torch.zeros(1, 4, 3, dtype=torch.int64), TypeError, "floating-point.*int64"),
        (torch.zeros(1, 0, 3), ValueError, "at least one point"),
        (torch.tensor([[[0.0, float("nan"), 0.0]]]), ValueError, "NaN or inf"),
        (torch.tensor([[[0.0, float("inf"), 0.0]]]), ValueError, "NaN or inf"),
        (np.zeros((1, 4, 3), dtype=np.float32), TypeError, "torch.Tensor"),
    ],
    ids=["rank-2", "rank-4", "last-dim", "integer", "no-points", "nan", "inf", "numpy"],
)
def test_bad_input(points, error, message):
    with pytest.raises(error, match=message):
        render_views(points)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("style", list(STYLES))
def test_cuda_matches_cpu(clouds, style):
    maps = render_views(clouds.cuda(), style)
    assert maps.device.type == "cuda"
    expected = render_views(clouds, style)
    assert ((maps.cpu() - expected).abs() <= 1e-5).float().mean().item() >= 0.999
