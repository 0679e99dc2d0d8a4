"""PointCLIPFeatureExtractor and PointCLIPProcessor: accepted inputs, preparation steps, shapes, saving, errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPProcessor, render_views
from pointclip_hf.model.feature_extraction_pointclip import farthest_point_sampling, normalize_to_unit_sphere
from pointclip_hf.model.processing_pointclip import processor_for_model


@pytest.mark.parametrize("style, views", [("pointclip_v1", 6), ("pointclip_v1_fewshot", 10), ("pointclip_v2", 10)])
def test_pixel_values_shape_and_reference_resize(style, views, example_clouds):
    reference_path = dict(normalize=False, sampling="first")
    processor = PointCLIPFeatureExtractor(projection_style=style, image_size=224, **reference_path)
    pixel_values = processor(example_clouds)["pixel_values"]
    assert pixel_values.shape == (2, views, 3, 224, 224) and pixel_values.dtype == torch.float32
    native = render_views(torch.from_numpy(example_clouds), style)
    expected = F.interpolate(native.flatten(0, 1)[:, None], size=(224, 224), mode="bilinear", align_corners=True)
    torch.testing.assert_close(pixel_values[:, :, 0].flatten(0, 1), expected[:, 0])
    torch.testing.assert_close(pixel_values[:, :, 1], pixel_values[:, :, 2])


def test_reference_data_pass_through_unchanged(example_clouds):
    """Without normalisation, 'first' sampling of 1024 points hands the reference clouds over untouched."""
    processor = PointCLIPFeatureExtractor(normalize=False, sampling="first")
    assert torch.equal(processor.prepare_points(example_clouds), torch.from_numpy(example_clouds))


def test_accepts_single_batch_lists_tensors_and_extra_channels(example_clouds):
    processor = PointCLIPFeatureExtractor(image_size=32)
    single = processor(example_clouds[0])["pixel_values"]
    assert single.shape == (1, 6, 3, 32, 32)
    with_normals = np.concatenate([example_clouds[0], np.ones_like(example_clouds[0])], axis=1)  # [N, 6]
    torch.testing.assert_close(processor(with_normals)["pixel_values"], single)
    torch.testing.assert_close(processor(example_clouds[0].tolist())["pixel_values"], single)
    torch.testing.assert_close(processor(torch.from_numpy(example_clouds[0]).double())["pixel_values"], single)
    ragged = [example_clouds[0], example_clouds[1][:700]]
    assert processor(ragged)["pixel_values"].shape == (2, 6, 3, 32, 32)
    assert isinstance(processor(example_clouds, return_tensors="np")["pixel_values"], np.ndarray)


def test_normalization_centres_and_scales():
    cloud = torch.randn(3, 500, 3) * torch.tensor([5.0, 1.0, 2.0]) + 7.0
    normalized = normalize_to_unit_sphere(cloud)
    torch.testing.assert_close(normalized.mean(dim=1), torch.zeros(3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalized.norm(dim=-1).amax(dim=1), torch.ones(3))


def test_sampling_methods(example_clouds):
    cloud = torch.from_numpy(example_clouds)
    first = PointCLIPFeatureExtractor(num_points=100, sampling="first").prepare_points(cloud)
    torch.testing.assert_close(first, normalize_to_unit_sphere(cloud)[:, :100])
    random_a = PointCLIPFeatureExtractor(num_points=100, sampling="random", seed=3).prepare_points(cloud)
    random_b = PointCLIPFeatureExtractor(num_points=100, sampling="random", seed=3).prepare_points(cloud)
    assert torch.equal(random_a, random_b) and not torch.equal(random_a, first)
    alone = PointCLIPFeatureExtractor(num_points=100, sampling="random", seed=3).prepare_points(cloud[1:])
    assert torch.equal(alone[0], random_a[1]), "a cloud's random sample must not depend on its batch"
    assert len(set(map(tuple, random_a[0].tolist()))) == 100
    padded = PointCLIPFeatureExtractor(num_points=2048).prepare_points(cloud)
    torch.testing.assert_close(padded[:, 1024:], padded[:, :1024])


def test_farthest_point_sampling_spreads_points():
    line = torch.linspace(0, 1, 101)[None, :, None].expand(1, 101, 3).contiguous()
    indices = farthest_point_sampling(line, 3)
    assert indices.tolist() == [[0, 100, 50]]
    cloud = torch.rand(2, 400, 3)
    fps = PointCLIPFeatureExtractor(num_points=32, sampling="fps", normalize=False).prepare_points(cloud)
    first = cloud[:, :32]

    def spread(pts):
        return torch.cdist(pts, pts).add(torch.eye(32) * 9).amin(dim=-1).mean()

    assert all(spread(fps[i : i + 1]) > spread(first[i : i + 1]) for i in range(2))


def test_clip_normalization_is_optional(example_clouds):
    raw = PointCLIPFeatureExtractor(image_size=32)(example_clouds[0])["pixel_values"]
    normalized = PointCLIPFeatureExtractor(image_size=32, clip_normalize=True)(example_clouds[0])["pixel_values"]
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
    torch.testing.assert_close(normalized, (raw - mean) / std)


def test_processor_save_and_load_round_trip(tiny_clip_dir, tmp_path, example_clouds):
    processor = PointCLIPProcessor(
        PointCLIPFeatureExtractor(projection_style="pointclip_v2", num_points=512, sampling="fps", image_size=32),
        AutoTokenizer.from_pretrained(tiny_clip_dir),
        prompt_templates=["a {}.", "the {}."],
        class_prompts={"chair": ["a chair to sit on."]},
    )
    processor.save_pretrained(tmp_path)
    loaded = PointCLIPProcessor.from_pretrained(tmp_path)
    assert loaded.feature_extractor.to_dict() == processor.feature_extractor.to_dict()
    assert loaded.prompt_templates == ["a {}.", "the {}."] and loaded.class_prompts == {"chair": ["a chair to sit on."]}
    out = loaded(point_clouds=example_clouds, labels=["chair", "table"])
    assert out["pixel_values"].shape == (2, 10, 3, 32, 32)
    assert out["prompt_class_ids"].tolist() == [0, 1, 1]
    assert out["input_ids"].shape[0] == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(projection_style="pointclip_v3"), "pointclip_v3"),
        (dict(sampling="nearest"), "sampling"),
        (dict(num_points=0), "positive"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PointCLIPFeatureExtractor(**kwargs)


@pytest.mark.parametrize(
    "clouds, error, match",
    [
        ([], ValueError, "No point clouds"),
        (np.zeros((2, 0, 3), np.float32), ValueError, "empty"),
        (np.zeros((4, 3), dtype=object), TypeError, "object dtype"),
        ([np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32)], ValueError, "Point cloud 1 has 2 channels"),
        (np.array([[0.0, 0.0, np.inf], [1.0, 0.0, 0.0]], np.float32), ValueError, "infinite"),
        ({"points": 1}, TypeError, "dict"),
        ("cloud.unknown", ValueError, "extension"),
    ],
)
def test_bad_clouds_name_the_problem(clouds, error, match):
    with pytest.raises(error, match=match):
        PointCLIPFeatureExtractor()(clouds)


def test_feature_extractor_loads_through_auto_class(tiny_clip_dir, tmp_path):
    from transformers import AutoFeatureExtractor

    from pointclip_hf import PointCLIPModel

    model = PointCLIPModel.from_pretrained(tiny_clip_dir, projection_style="pointclip_v2")
    model.save_pretrained(tmp_path)
    processor_for_model(model).save_pretrained(tmp_path)
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(extractor, PointCLIPFeatureExtractor) and extractor.projection_style == "pointclip_v2"


def test_a_folder_saved_with_the_old_extractor_name_loads_into_the_renamed_class(tiny_clip_dir, tmp_path):
    from transformers import AutoFeatureExtractor, AutoProcessor

    import pointclip_hf
    from pointclip_hf import PointCLIPModel

    model = PointCLIPModel.from_pretrained(tiny_clip_dir, projection_style="pointclip_v2")
    model.save_pretrained(tmp_path)
    processor_for_model(model).save_pretrained(tmp_path)  # the extractor's settings inside processor_config.json
    processor_for_model(model).feature_extractor.save_pretrained(tmp_path)  # and alone, in preprocessor_config.json
    for name in ("processor_config.json", "preprocessor_config.json"):  # as saved before the rename
        path = tmp_path / name
        path.write_text(path.read_text().replace("PointCLIPFeatureExtractor", "PointCloudProcessor"))
        assert '"feature_extractor_type": "PointCloudProcessor"' in path.read_text()

    extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    for loaded in (extractor, processor.feature_extractor):
        assert type(loaded) is PointCLIPFeatureExtractor and loaded.projection_style == "pointclip_v2"
    extractor.save_pretrained(tmp_path / "resaved")
    assert (
        '"feature_extractor_type": "PointCLIPFeatureExtractor"'
        in (tmp_path / "resaved/preprocessor_config.json").read_text()
    )
    assert not hasattr(pointclip_hf, "PointCloudProcessor")


def test_the_processor_of_a_model_is_loaded_once(tiny_clip_dir):
    from pointclip_hf import PointCLIPModel

    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    first = processor_for_model(model)  # e.g. embed_point_clouds, then build_index: one load, not one per call
    assert processor_for_model(model) is first and model.processor is first
