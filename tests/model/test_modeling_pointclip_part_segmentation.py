"""Part segmentation: golden parity with the reference in its transposed mode, the correct lookup by default, the head,
the reference's scrambled patch tokens and its whole pipeline end to end, a planted synthetic object, the tiny CLIP
end to end, the pipeline and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_tokenizer
from official_part_segmentation_golden import build_official_size_clip, clip_checksum, segmentation_model
from transformers import CLIPConfig, CLIPModel, pipeline

import pointclip_hf
from pointclip_hf import PointCLIPForZeroShotPartSegmentation, render_part_views
from pointclip_hf.model import projection_part_segmentation
from pointclip_hf.model.modeling_pointclip_part_segmentation import part_logits_at_points, scramble_patch_tokens
from pointclip_hf.model.projection import render_views
from pointclip_hf.model.projection_part_segmentation import PartViews, crop_for_clip, render_part_depth

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def golden():
    with np.load(FIXTURES / "v2_part_segmentation.npz") as arrays:
        return {name: torch.from_numpy(arrays[name]) for name in arrays.files}


@pytest.fixture(scope="module")
def official_depth(golden):
    return render_part_depth(golden["points"], transposed_lookup=True)


@pytest.fixture(scope="module")
def correct_depth(golden):
    return render_part_depth(golden["points"])


@pytest.fixture(scope="module")
def official_views(official_depth):
    return crop_for_clip(official_depth)


@pytest.fixture(scope="module")
def correct_views(correct_depth):
    return crop_for_clip(correct_depth)


def _on_object(images: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Whether each point's pixel is darker than the white background: `[B, V, N]`."""
    batch, views = images.shape[:2]
    b = torch.arange(batch)[:, None, None]
    v = torch.arange(views)[None, :, None]
    return images[b, v, pixels[..., 0].int(), pixels[..., 1].int()] < 1


# Golden parity in the reference's (transposed) mode.


def test_official_mode_matches_reference_images(golden, official_depth):
    images = official_depth.images.reshape(golden["img_224"].shape)
    within = ((images - golden["img_224"]).abs() <= 1e-5).float().mean().item()
    assert within >= 0.999


def test_official_mode_matches_reference_pixels_and_visibility(golden, official_depth):
    assert torch.equal(official_depth.pixels.reshape(20, 2048, 2).long(), golden["point_loc"].long())
    agree = (official_depth.visible.reshape(20, 2048) == golden["is_seen"]).float().mean().item()
    assert agree >= 0.999


def test_pixels_are_int16_and_map_to_large_clip_sizes_without_overflow(official_depth):
    """int16 pixels (a quarter of int64's memory) map to a 336-pixel CLIP input as the same pixels in int64 do:
    `(pixel - 20) * 336` exceeds int16."""
    assert official_depth.pixels.dtype == torch.int16
    as_int64 = official_depth._replace(pixels=official_depth.pixels.long())
    large = crop_for_clip(official_depth, image_size=336).pixels
    assert large.dtype == torch.int16 and int(large.max()) > 300
    assert torch.equal(large.long(), crop_for_clip(as_int64, image_size=336).pixels)


def test_official_mode_matches_reference_clip_input(golden, official_views):
    views = official_views
    within = ((views.images[0] - golden["clip_input_cloud0"]).abs() <= 1e-5).float().mean().item()
    assert within >= 0.999
    assert torch.equal(views.pixels.reshape(20, 2048, 2).long(), golden["point_loc_clip"].long())


def test_head_matches_reference(golden):
    logits = part_logits_at_points(
        golden["head_patch_features"],
        golden["head_text_features"],
        golden["point_loc_clip"].long().view(2, 10, 2048, 2),
        golden["is_seen"].view(2, 10, 2048),
        golden["head_view_weights"],
        image_size=224,
    )
    assert torch.allclose(logits, golden["head_point_logits"], atol=1e-4, rtol=1e-5)
    assert torch.equal(logits.argmax(-1), golden["head_point_seg"])


# The reference's whole pipeline end to end: its projection, a seeded CLIP of ViT-B/16's shape, its saved-feature layout
# and its head with its prompts and view weights (tests/official_part_segmentation_golden.py made the golden).


def test_scrambled_tokens_are_the_reference_read_back():
    features = torch.randn(2, 10, 196, 512)
    saved = features.reshape(2, 10, 14, 14, 512).permute(0, 1, 4, 2, 3)  # main.py: [N, 10, C, 14, 14]
    assert torch.equal(scramble_patch_tokens(features), saved.reshape(-1, 10, 196, 512))  # post_search.py


@pytest.fixture(scope="module")
def end_to_end():
    with np.load(FIXTURES / "v2_part_segmentation_end_to_end.npz") as arrays:
        golden = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    return golden | json.loads((FIXTURES / "v2_part_segmentation_end_to_end.json").read_text())


@pytest.fixture(scope="module")
def official_size_model(end_to_end):
    clip = build_official_size_clip()
    assert clip_checksum(clip) == pytest.approx(end_to_end["clip_checksum"], rel=1e-12), "not the golden's CLIP"
    return segmentation_model(clip)


@pytest.fixture(scope="module")
def end_to_end_views(end_to_end, golden, official_views):
    """Our views of the 4 clouds in the reference's (transposed) mode; the first 2 are those of `official_views`."""
    assert torch.equal(end_to_end["points"][:2], golden["points"])
    rest = render_part_views(end_to_end["points"][2:], transposed_lookup=True)
    return PartViews(*(torch.cat(pair) for pair in zip(official_views, rest)))


@pytest.fixture(scope="module")
def end_to_end_outputs(end_to_end, official_size_model, end_to_end_views):
    """Per cloud, our official-order mode (transposed lookup and scrambled tokens) on the golden's prompt tokens."""
    views = end_to_end_views
    outputs = []
    for cloud in range(len(end_to_end["categories"])):
        with torch.no_grad():
            outputs.append(official_size_model(
                pixel_values=views.images[cloud : cloud + 1, :, None].expand(-1, -1, 3, -1, -1),
                point_pixels=views.pixels[cloud : cloud + 1], point_visible=views.visible[cloud : cloud + 1],
                input_ids=end_to_end[f"token_ids_{cloud}"].long(), view_weights=end_to_end["view_weights"][cloud],
                scrambled_patch_tokens=True,
            ))  # fmt: skip
    return outputs


def test_end_to_end_views_and_text_match_the_reference(end_to_end, end_to_end_views, end_to_end_outputs):
    for cloud, output in enumerate(end_to_end_outputs):
        assert torch.equal(end_to_end_views.pixels[cloud].long(), end_to_end[f"point_loc_clip_{cloud}"].long())
        assert torch.equal(end_to_end_views.visible[cloud], end_to_end[f"is_seen_{cloud}"])
        assert torch.allclose(output.text_embeds, end_to_end[f"text_features_{cloud}"], atol=1e-6)


def test_end_to_end_scrambled_tokens_match_the_reference(end_to_end, end_to_end_outputs):
    for cloud, output in enumerate(end_to_end_outputs):
        patch_logits = 100 * scramble_patch_tokens(output.patch_features[0]) @ output.text_embeds.T
        assert torch.allclose(patch_logits, end_to_end[f"patch_logits_{cloud}"], atol=1e-4)


def test_official_order_mode_gives_the_reference_parts(end_to_end, end_to_end_outputs):
    """The same logits, and the same part for every point but 16: the airplane's and the chair's points seen in no
    view, whose 4 logits are all 0; the reference's `torch.topk` breaks that tie at part 2 (on CPU), our argmax at
    part 0. The other ties break alike: the mug's unseen points (2 parts) and the table's "leg or support" and
    "drawer", whose prompts are the same sentence."""
    differing_points = 0
    for cloud, output in enumerate(end_to_end_outputs):
        reference = end_to_end[f"point_logits_{cloud}"]
        assert torch.allclose(output.logits[0], reference, atol=1e-4)
        parts = output.logits[0].argmax(-1)
        is_best = reference == reference.amax(-1, keepdim=True)
        assert is_best.gather(1, parts[:, None]).all()
        differing = reference[parts != end_to_end[f"point_parts_{cloud}"]]
        assert (differing == 0).all()
        differing_points += len(differing)
    assert differing_points == 16


def test_correct_tokens_disagree_with_the_reference(end_to_end, official_size_model, end_to_end_views,
                                                    end_to_end_outputs):  # fmt: skip
    same = []
    for cloud, output in enumerate(end_to_end_outputs):
        correct = official_size_model(
            patch_features=output.patch_features, point_pixels=end_to_end_views.pixels[cloud : cloud + 1],
            point_visible=end_to_end_views.visible[cloud : cloud + 1], text_embeds=output.text_embeds,
            view_weights=end_to_end["view_weights"][cloud],
        )  # fmt: skip
        same.append((correct.logits[0].argmax(-1) == end_to_end[f"point_parts_{cloud}"]).float().mean())
    assert torch.stack(same).mean() < 0.5


# The correct lookup.


def test_default_mode_reads_the_transpose_of_the_reference(official_depth, correct_depth):
    assert torch.equal(correct_depth.images, official_depth.images)
    assert torch.equal(correct_depth.pixels, official_depth.pixels.flip(-1))


def test_default_mode_visible_points_lie_on_the_object(official_depth, correct_depth, correct_views):
    on_object = _on_object(correct_depth.images, correct_depth.pixels)
    assert correct_depth.visible.float().mean() > 0.5
    assert on_object[correct_depth.visible].all()
    assert on_object.all()
    assert _on_object(correct_views.images, correct_views.pixels)[correct_views.visible].all()
    # The reference's transposed reading lands on the object for fewer than half of the lookups.
    assert _on_object(official_depth.images, official_depth.pixels).float().mean() < 0.5


def test_points_of_a_batch_do_not_depend_on_each_other(golden, correct_views):
    both = correct_views
    second = render_part_views(golden["points"][1:], transposed_lookup=False)
    assert torch.equal(render_views(golden["points"][1:], "pointclip_v2_part_segmentation"), second.images)
    assert torch.equal(both.images[1:], second.images)
    assert torch.equal(both.pixels[1:], second.pixels)
    assert torch.equal(both.visible[1:], second.visible)


def test_views_rendered_one_at_a_time_equal_all_at_once(golden, monkeypatch):
    """Each CPU chunk writes its rows of the outputs: one view per chunk, the chunks of two clouds on two threads,
    gives exactly the views of one chunk holding every cloud and view (as off the CPU)."""
    points = golden["points"][:2]
    monkeypatch.setattr(projection_part_segmentation, "_CPU_POINTS_FOR_TWO_VIEWS", 0)
    monkeypatch.setattr(projection_part_segmentation, "num_worker_threads", lambda device: 2)
    one_at_a_time = render_part_views(points, image_size=112)
    everything = [(slice(0, 2), slice(0, projection_part_segmentation.NUM_VIEWS))]
    monkeypatch.setattr(projection_part_segmentation, "_view_chunks", lambda points: everything)
    all_at_once = render_part_views(points, image_size=112)
    for chunked, whole in zip(one_at_a_time, all_at_once):
        assert torch.equal(chunked, whole)


def test_degenerate_clouds_give_finite_images():
    for cloud in (torch.zeros(1, 5, 3), torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])):
        views = render_part_views(cloud)
        assert torch.isfinite(views.images).all()
        assert views.visible.any(dim=1).all()


# A synthetic object with planted patch features.


def _box_on_legs(num_points: int = 2048, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat box (part 0) high above four thin legs (part 1), y-up, in the unit sphere."""
    rng = np.random.default_rng(seed)
    half = num_points // 2
    box = np.stack([rng.uniform(-0.6, 0.6, half), rng.uniform(0.3, 0.6, half), rng.uniform(-0.6, 0.6, half)], 1)
    corner = rng.integers(0, 4, num_points - half)
    legs = np.stack(
        [
            np.where(corner % 2, 0.5, -0.5) + rng.normal(0, 0.02, len(corner)),
            rng.uniform(-0.9, -0.4, len(corner)),
            np.where(corner // 2, 0.5, -0.5) + rng.normal(0, 0.02, len(corner)),
        ],
        1,
    )
    points = torch.tensor(np.concatenate([box, legs]), dtype=torch.float32)[None]
    labels = torch.cat([torch.zeros(half, dtype=torch.long), torch.ones(num_points - half, dtype=torch.long)])
    return points, labels


def _planted_segmentation(transposed_lookup: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Patches above the middle of the side views match part 0's prompt, those below part 1's; other views off."""
    points, labels = _box_on_legs()
    views = render_part_views(points, transposed_lookup=transposed_lookup)
    grid, width = 14, 8
    text = torch.eye(2, width)
    split = grid // 2
    rows = torch.arange(grid).repeat_interleave(grid)
    patches = torch.where((rows < split)[:, None], text[0], text[1]).expand(1, 10, -1, -1)
    weights = torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 2)
    logits = part_logits_at_points(patches, text, views.pixels, views.visible, weights, image_size=224)
    return logits[0].argmax(-1), labels


def _iou(prediction: torch.Tensor, truth: torch.Tensor, part: int) -> float:
    union = ((prediction == part) | (truth == part)).sum().item()
    return ((prediction == part) & (truth == part)).sum().item() / union


def test_planted_parts_are_segmented_exactly():
    prediction, labels = _planted_segmentation(transposed_lookup=False)
    assert _iou(prediction, labels, 0) == 1.0
    assert _iou(prediction, labels, 1) == 1.0


def test_planted_parts_are_missed_by_the_transposed_lookup():
    prediction, labels = _planted_segmentation(transposed_lookup=True)
    assert min(_iou(prediction, labels, 0), _iou(prediction, labels, 1)) < 0.9


# The tiny CLIP end to end (7 x 7 patches at 224 px).


@pytest.fixture(scope="module")
def seg_clip_dir(tmp_path_factory):
    config = CLIPConfig(
        text_config=dict(
            vocab_size=514, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, image_size=224,
            patch_size=32,
        ),
        projection_dim=16,
        logit_scale_init_value=float(np.log(100.0)),
    )  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-clip-224")
    CLIPModel(config).eval().save_pretrained(path)
    build_tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def seg_model(seg_clip_dir):
    return PointCLIPForZeroShotPartSegmentation.from_pretrained(seg_clip_dir)


@pytest.fixture(scope="module")
def chair_like(golden):
    return golden["points"][0, :512].numpy()


def test_tiny_clip_patch_features(seg_model, golden):
    assert seg_model.config.projection_style == "pointclip_v2_part_segmentation"
    assert seg_model.patch_grid_size == 7
    views = render_part_views(golden["points"][:1, :256])
    pixel_values = views.images[:, :, None].expand(-1, -1, 3, -1, -1)
    patches = seg_model.get_patch_features(pixel_values)
    assert patches.shape == (1, 10, 49, 16)
    assert torch.allclose(patches.norm(dim=-1), torch.ones(1, 10, 49), atol=1e-5)
    vision = seg_model.clip.vision_model
    with torch.no_grad():
        hidden = vision(pixel_values=pixel_values[0]).last_hidden_state
        pooled = seg_model.clip.visual_projection(vision.post_layernorm(hidden[:, 1:]))
    assert torch.allclose(patches[0], torch.nn.functional.normalize(pooled, dim=-1), atol=1e-5)


@pytest.fixture(scope="module")
def chair_result(seg_model, chair_like):
    return seg_model.segment(chair_like, parts=["back", "seat", "leg"], object_name="chair")


def test_tiny_clip_segment_end_to_end(chair_result, chair_like):
    result = chair_result
    assert result["parts"] == ["back", "seat", "leg"]
    assert len(result["labels"]) == result["label_ids"].shape[0] == len(chair_like)
    assert result["scores"].shape == (len(chair_like), 3)
    assert np.allclose(result["scores"].sum(-1), 1, atol=1e-5)
    assert set(result["labels"]) <= {"back", "seat", "leg"}
    assert [result["parts"][i] for i in result["label_ids"]] == result["labels"]
    assert result["visible"].mean() > 0.9


def test_up_axis_turns_the_cloud_before_segmenting(seg_clip_dir, chair_like, chair_result):
    z_up = np.stack([chair_like[:, 0], -chair_like[:, 2], chair_like[:, 1]], axis=1)  # the chair stored z up
    model = PointCLIPForZeroShotPartSegmentation.from_pretrained(seg_clip_dir, up_axis="z")
    result = model.segment(z_up, parts=["back", "seat", "leg"], object_name="chair")
    assert np.array_equal(result["scores"], chair_result["scores"])


def test_segment_results_do_not_depend_on_the_batch(seg_model, golden, chair_like, chair_result):
    other = golden["points"][1, :300].numpy()
    both = seg_model.segment([other, chair_like], parts=["back", "seat", "leg"], object_name="chair")
    assert np.array_equal(both[1]["scores"], chair_result["scores"])


def test_pipeline_round_trip(seg_model, chair_like, chair_result):
    segmenter = pipeline(pointclip_hf.PART_SEGMENTATION_TASK, model=seg_model)
    from_pipeline = segmenter(chair_like, parts=["back", "seat", "leg"], object_name="chair")
    assert np.array_equal(from_pipeline["scores"], chair_result["scores"])
    part_prompts = {"back": ["the backrest of a chair."], "seat": ["the seat of a chair."]}
    prompted = segmenter(chair_like, parts=["back", "seat", "leg"], object_name="chair", part_prompts=part_prompts)
    assert not np.allclose(prompted["scores"][:, :2], chair_result["scores"][:, :2])


def test_official_lookup_on_request(seg_model, chair_like, chair_result):
    official = seg_model.segment(chair_like, parts=["back", "seat", "leg"], object_name="chair", transposed_lookup=True)
    assert not np.allclose(official["scores"], chair_result["scores"])


def test_scrambled_patch_tokens_on_request(seg_model, chair_like, chair_result):
    scrambled = seg_model.segment(chair_like, parts=["back", "seat", "leg"], object_name="chair",
                                  scrambled_patch_tokens=True)  # fmt: skip
    assert not np.allclose(scrambled["scores"], chair_result["scores"])


# Bad input.


@pytest.mark.parametrize(
    ("parts", "message"), [(["seat"], "at least 2 parts"), (["seat", "seat"], "duplicates"), ([], "empty")]
)
def test_bad_parts(seg_model, chair_like, parts, message):
    with pytest.raises(ValueError, match=message):
        seg_model.segment(chair_like, parts=parts)


def test_bad_view_weights(seg_model, chair_like):
    with pytest.raises(ValueError, match="view_weights"):
        seg_model.segment(chair_like, parts=["a", "b"], view_weights=[0.0] * 10)


def test_cloud_seen_from_no_view(seg_model, chair_like, monkeypatch):
    from pointclip_hf.model import pipeline_pointclip_part_segmentation as module

    def unseen(*args, **kwargs):
        views = render_part_views(*args, **kwargs)
        return views._replace(visible=torch.zeros_like(views.visible))

    monkeypatch.setattr(module, "render_part_views", unseen)
    with pytest.raises(ValueError, match="cannot be seen from any view"):
        seg_model.segment(chair_like, parts=["a", "b"])


def test_siblings_share_the_base_and_return_tuples_on_request(seg_model, golden):
    from pointclip_hf.model.modeling_pointclip import PointCLIPPreTrainedModel

    for name in ("get_text_features", "_check_clip_is_frozen", "save_pretrained", "push_to_hub", "from_pretrained"):
        defined_on = [cls for cls in PointCLIPForZeroShotPartSegmentation.__mro__ if name in vars(cls)][0]
        assert defined_on in (PointCLIPForZeroShotPartSegmentation, PointCLIPPreTrainedModel), name
        assert pointclip_hf.PointCLIPModel not in PointCLIPForZeroShotPartSegmentation.__mro__
    assert not any(parameter.requires_grad for parameter in seg_model.clip.parameters())
    views = render_part_views(golden["points"][:1, :64])
    inputs = dict(
        pixel_values=views.images[:, :, None].expand(-1, -1, 3, -1, -1),
        point_pixels=views.pixels,
        point_visible=views.visible,
        text_embeds=torch.randn(3, 16),
    )
    with torch.no_grad():
        as_output, as_tuple = seg_model(**inputs), seg_model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], as_output.logits)
