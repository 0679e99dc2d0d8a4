"""A cloud's view features, logits and scores are bitwise identical whatever else is in its batch, and whatever the
number of CPU threads (the rule measured on the machine the tests run on)."""

import numpy as np
import pytest
import torch
from conftest import build_tiny_clip, build_tiny_tokenizer
from transformers import CLIPModel

from pointclip_hf import PointCLIPConfig, PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor
from pointclip_hf.model.pipeline_pointclip import _LABEL_EMBEDDINGS, label_embeddings
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.testing_utils import random_clip_config

LABELS = ["cube", "sphere", "cone"]


def build_wide_clip() -> CLIPModel:
    """A random CLIP as wide as ViT-B (hidden size 768) with 2 layers: its kernels block differently from the tiny
    one's."""
    config = random_clip_config("vit-b", image_size=224, patch_size=32, logit_scale_init_value=2.6592)
    torch.manual_seed(0)
    return CLIPModel(config).eval()


def build_model(clip: CLIPModel, projection_style: str, use_adapter: bool) -> PointCLIPModel:
    config = PointCLIPConfig(
        clip_config=clip.config,
        clip_model_name_or_path=None,
        projection_style=projection_style,
        use_adapter=use_adapter,
    )
    model = PointCLIPModel(config)
    model.clip.load_state_dict(clip.state_dict())
    if use_adapter:
        torch.manual_seed(1)
        for parameter in model.adapter.parameters():
            parameter.data.normal_(0, 0.05)
    model.eval()
    image_size = clip.config.vision_config.image_size
    model.processor = PointCLIPProcessor(
        PointCLIPFeatureExtractor(projection_style, num_points=256, image_size=image_size), build_tiny_tokenizer()
    )
    return model


MODELS = {
    "tiny-v1": lambda: build_model(build_tiny_clip(), "pointclip_v1", use_adapter=False),
    "tiny-v2-adapter": lambda: build_model(build_tiny_clip(), "pointclip_v2", use_adapter=True),
    "wide-v1": lambda: build_model(build_wide_clip(), "pointclip_v1", use_adapter=False),
    "wide-fewshot-adapter": lambda: build_model(build_wide_clip(), "pointclip_v1_fewshot", use_adapter=True),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    return MODELS[request.param]()


@pytest.fixture(scope="module")
def clouds():
    rng = np.random.default_rng(3)
    return [rng.normal(size=(int(rng.integers(300, 600)), 3)).astype(np.float32) for _ in range(8)]


@torch.inference_mode()
def logits_of(model, clouds) -> torch.Tensor:
    processor = processor_for_model(model)
    pixel_values = processor.feature_extractor(clouds)["pixel_values"]
    return model(pixel_values=pixel_values, text_embeds=label_embeddings(model, processor, LABELS)).logits


def test_logits_do_not_depend_on_the_batch(model, clouds):
    target = clouds[0]
    alone = logits_of(model, [target])[0]
    for size in (3, 8):
        for position in range(size):
            batch = [cloud for cloud in clouds[1:size]]
            batch.insert(position, target)
            assert torch.equal(logits_of(model, batch)[position], alone), (size, position)


def test_scores_do_not_depend_on_batch_size(model, clouds):
    expected = [model.classify(cloud, LABELS) for cloud in clouds]
    for batch_size in (1, 2, 5):
        assert model.classify(clouds, LABELS, batch_size=batch_size) == expected


def test_label_embedding_does_not_depend_on_the_other_labels(model):
    processor = processor_for_model(model)
    alone = label_embeddings(model, processor, ["cube"])[0]
    assert torch.equal(label_embeddings(model, processor, ["cube", "sphere", "cone"])[0], alone)
    assert torch.equal(label_embeddings(model, processor, ["a very long label name for a shape", "cube"])[1], alone)


def test_padded_tower_calls_do_not_depend_on_neighbours(model, clouds):
    """With several clouds per tower call (the accelerator default) the last call is padded with blank clouds; a
    cloud's features depend only on its own images and its slot in the call, never on the other clouds' content."""
    pixel_values = processor_for_model(model).feature_extractor(clouds[:5])["pixel_values"]
    others = processor_for_model(model).feature_extractor(clouds[5:8])["pixel_values"]
    with torch.inference_mode():
        one_per_call = model.get_view_features(pixel_values)
        model.config.max_images_per_batch = 3 * model.config.num_views
        try:
            three_per_call = model.get_view_features(pixel_values)
            neighbours_changed = model.get_view_features(torch.cat([pixel_values[:4], others[:1]]))
        finally:
            model.config.max_images_per_batch = None
    torch.testing.assert_close(three_per_call, one_per_call, rtol=1e-5, atol=1e-5)
    assert torch.equal(neighbours_changed[:4], three_per_call[:4])


def test_thread_count_does_not_change_the_bits(model, clouds):
    """The rule the multi-process path relies on (torchrun sets OMP_NUM_THREADS=1): on this machine, 1 and 2 threads
    give the same bits. If this fails on a CPU, run every process with the same thread count."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _LABEL_EMBEDDINGS.pop(model, None)
        one_thread = logits_of(model, clouds[:3])
        torch.set_num_threads(2)
        _LABEL_EMBEDDINGS.pop(model, None)
        two_threads = logits_of(model, clouds[:3])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one_thread, two_threads)
