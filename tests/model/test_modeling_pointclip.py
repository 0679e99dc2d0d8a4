"""PointCLIPModel: reference logit parity, the adapter, the text cache, classify, saving and loading."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoProcessor, AutoTokenizer, CLIPModel

import pointclip_hf
from pointclip_hf import InterViewAdapter, PointCLIPConfig, PointCLIPModel, convert_reference_adapter
from pointclip_hf.model.pipeline_pointclip import label_embeddings
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.testing_utils import run_without_the_package

LABELS = ["chair", "cube", "table"]


def same_predictions(got, expected, tol=1e-5) -> bool:
    """Equal labels in equal order and scores within `tol`, for one cloud's list or a batch of them."""
    if got and isinstance(got[0], list):
        return len(got) == len(expected) and all(same_predictions(g, e, tol) for g, e in zip(got, expected))
    return [p["label"] for p in got] == [p["label"] for p in expected] and all(
        abs(g["score"] - e["score"]) <= tol for g, e in zip(got, expected)
    )


def test_zero_shot_logits_equal_reference_formula(zero_shot_model, tiny_clip_dir, example_clouds):
    """Spec 2.5: logits = exp(logit_scale) * [B, V*C] per-view-normalised @ normalize(text.repeat(V)).T."""
    model, clip = zero_shot_model, CLIPModel.from_pretrained(tiny_clip_dir).eval()
    processor = processor_for_model(model)
    pixel_values = processor(point_clouds=example_clouds)["pixel_values"]
    tokens = AutoTokenizer.from_pretrained(tiny_clip_dir)(
        [f"point cloud depth map of a {c}." for c in LABELS], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        batch, views = pixel_values.shape[:2]
        image = clip.get_image_features(pixel_values=pixel_values.flatten(0, 1)).pooler_output
        image = (image / image.norm(dim=-1, keepdim=True)).reshape(batch, -1)
        text = clip.get_text_features(**tokens).pooler_output.repeat(1, views)
        text = text / text.norm(dim=-1, keepdim=True)
        expected = clip.logit_scale.exp() * image @ text.T
        ours = model(pixel_values=pixel_values, input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    assert ours.logits.shape == (2, 3)
    torch.testing.assert_close(ours.logits, expected, rtol=1e-5, atol=1e-4)
    assert ours.view_features.shape == (2, 6, 16) and ours.point_cloud_embeds.shape == (2, 6, 16)


def test_plain_clip_checkpoint_weights_load_into_model(zero_shot_model, tiny_clip_dir):
    clip = CLIPModel.from_pretrained(tiny_clip_dir)
    for name, value in clip.state_dict().items():
        torch.testing.assert_close(zero_shot_model.clip.state_dict()[name], value, rtol=0, atol=0)


def test_view_weights_scale_view_blocks(tiny_clip_dir, example_clouds):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    features = torch.randn(2, 6, 16)
    text = F.normalize(torch.randn(3, 16), dim=-1)
    weights = [1.0, 0.5, 0.25, 0.75, 1.0, 0.0]
    model.set_view_weights(weights)
    normalized = F.normalize(features, dim=-1)
    expected = 100 / np.sqrt(6) * torch.einsum("bvc,v,kc->bk", normalized, torch.tensor(weights), text)
    logits = model(view_features=features, text_embeds=text).logits
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="6 views"):
        model.set_view_weights([1.0, 1.0])


class ReferenceAdapter(nn.Module):
    """The official PointCLIP `Adapter` (`trainers/fewshot.py`), with its parameter names."""

    class BatchNormPoint(nn.Module):
        def __init__(self, size):
            super().__init__()
            self.bn = nn.BatchNorm1d(size)

        def forward(self, x):
            b, v, c = x.shape
            return self.bn(x.reshape(b * v, c)).reshape(b, v, c)

    def __init__(self, views, width, ratio=0.6, init=0.5, dropout=0.075):
        super().__init__()
        self.views, self.width, self.ratio = views, width, ratio
        self.fusion_ratio = nn.Parameter(torch.full((views,), init))
        self.global_f = nn.Sequential(
            self.BatchNormPoint(width), nn.Dropout(dropout), nn.Flatten(), nn.Linear(views * width, width),
            nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout),
        )  # fmt: skip
        self.view_f = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, views * width), nn.ReLU())

    def forward(self, feat):
        img_feat = feat.reshape(-1, self.views, self.width)
        global_feat = self.global_f(img_feat * self.fusion_ratio.reshape(1, -1, 1))
        return self.view_f(global_feat) * self.ratio + feat.reshape(-1, self.views * self.width) * (1 - self.ratio)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_adapter_matches_reference_after_conversion(mode):
    torch.manual_seed(0)
    reference = ReferenceAdapter(10, 16)
    with torch.no_grad():  # non-trivial BatchNorm statistics and fusion weights
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5), module.bias.uniform_(-0.1, 0.1)
        reference.fusion_ratio.uniform_(0.2, 0.9)
    ours = InterViewAdapter(10, 16)
    ours.load_state_dict(convert_reference_adapter({f"adapter.{k}": v for k, v in reference.state_dict().items()}))
    getattr(reference, mode)(), getattr(ours, mode)()
    features = torch.randn(4, 10, 16)
    torch.manual_seed(1)
    expected = reference(features.reshape(40, 16))
    torch.manual_seed(1)
    got = ours(features)
    torch.testing.assert_close(got.reshape(4, 160), expected, rtol=1e-5, atol=1e-6)


def test_convert_reference_adapter_rejects_foreign_keys():
    with pytest.raises(ValueError, match="not a parameter of the reference"):
        convert_reference_adapter({"visual.conv1.weight": torch.zeros(1)})


def test_adapter_model_logits_follow_reference_formula(tiny_clip_dir):
    """Spec 3.2: adapter on [B*V, C], L2 norm over all V*C, text repeated x V and normalised."""
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, projection_style="pointclip_v1_fewshot", use_adapter=True)
    features, text = torch.randn(3, 10, 16), F.normalize(torch.randn(4, 16), dim=-1)
    with torch.no_grad():
        adapted = model.adapter(features).reshape(3, 160)
        image = adapted / adapted.norm(dim=-1, keepdim=True)
        repeated = text.repeat(1, 10)
        expected = 100 * image @ (repeated / repeated.norm(dim=-1, keepdim=True)).T
        logits = model(view_features=features, text_embeds=text).logits
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def count_text_calls(model):
    calls = []
    original = model.get_text_features

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    model.get_text_features = counting
    return calls


def test_label_embeddings_are_cached_and_never_stale(tiny_clip_dir, example_clouds):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    calls = count_text_calls(model)
    first = model.classify(example_clouds[1], LABELS)
    assert len(calls) == 1
    assert model.classify(example_clouds[1], LABELS) == first
    assert len(calls) == 1, "the second call with the same labels must not run the text encoder"
    model.classify(example_clouds[1], ["chair", "cube"])
    assert len(calls) == 2
    model.config.prompt_templates = ["a depth map of a {}."]
    model.classify(example_clouds[1], LABELS)
    assert len(calls) == 3
    before = label_embeddings(model, processor_for_model(model), LABELS).clone()
    with torch.no_grad():
        model.clip.text_projection.weight.add_(0.5 * torch.randn_like(model.clip.text_projection.weight))
    after = label_embeddings(model, processor_for_model(model), LABELS)
    assert len(calls) == 4 and not torch.allclose(before, after)


def test_prompt_ensemble_averages_normalised_sentences(tiny_clip_dir):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, prompt_templates=["a {}.", "the big {}."])
    tokenizer = processor_for_model(model).tokenizer
    with torch.no_grad():
        single = [
            model.get_text_features(**tokenizer([t.format("chair")], return_tensors="pt"))[0]
            for t in ("a {}.", "the big {}.")
        ]
        expected = F.normalize(single[0] + single[1], dim=-1)
        embeds = label_embeddings(model, processor_for_model(model), ["chair"])
        torch.testing.assert_close(embeds[0], expected, rtol=1e-5, atol=1e-6)


def test_classify_output_format(zero_shot_model, example_clouds):
    result = zero_shot_model.classify(example_clouds[0], LABELS)
    assert [set(r) for r in result] == [{"label", "score"}] * 3
    assert sorted(r["label"] for r in result) == sorted(LABELS)
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-5
    batch = zero_shot_model.classify(example_clouds, LABELS, top_k=2)
    assert len(batch) == 2 and all(len(r) == 2 for r in batch)
    assert batch[0] == result[:2]
    assert same_predictions(zero_shot_model.classify(torch.from_numpy(example_clouds[0]).tolist(), LABELS), result)


@pytest.mark.parametrize(
    "cloud, labels, error, match",
    [
        (np.zeros((5, 3), np.float32), [], ValueError, "empty"),
        (np.zeros((5, 3), np.float32), ["a", "a"], ValueError, "duplicates"),
        (np.full((5, 3), np.nan, np.float32), LABELS, ValueError, "NaN"),
        (np.zeros((0, 3), np.float32), LABELS, ValueError, "empty"),
        (np.ones((7, 3), np.float32), LABELS, ValueError, "degenerate"),
        (np.zeros((5, 2), np.float32), LABELS, ValueError, "channels"),
        (np.zeros((5, 3), np.int64), LABELS, TypeError, "floating point"),
        (np.zeros((2, 2, 5, 3), np.float32), LABELS, ValueError, "shape"),
    ],
)
def test_classify_rejects_bad_input(zero_shot_model, cloud, labels, error, match):
    with pytest.raises(error, match=match):
        zero_shot_model.classify(cloud, labels)


def test_pixel_values_with_wrong_view_count_are_rejected(zero_shot_model):
    with pytest.raises(ValueError, match="expects 6"):
        zero_shot_model(pixel_values=torch.zeros(1, 10, 3, 32, 32), text_embeds=torch.randn(2, 16))


def save_pointclip(model, path):
    model.save_pretrained(path)
    processor_for_model(model).save_pretrained(path)
    return path


def test_save_writes_only_the_adapter_and_reloads_identically(tiny_clip_dir, tmp_path, example_clouds):
    model = PointCLIPModel.from_pretrained(
        tiny_clip_dir, projection_style="pointclip_v1_fewshot", use_adapter=True, label_names=LABELS
    )
    with torch.no_grad():
        model.adapter.view_fusion_weights.uniform_(0.1, 1.0)
        model.adapter.view_norm.running_mean.uniform_(-1, 1)
    model.save_pretrained(tmp_path, state_dict=model.state_dict())  # as Trainer does: must still filter
    tensors = load_file(tmp_path / "model.safetensors")
    assert tensors and all(key.startswith("adapter.") for key in tensors)
    assert all(t.dtype in (torch.float32, torch.int64) for t in tensors.values())
    processor_for_model(model).save_pretrained(tmp_path)
    reloaded = PointCLIPModel.from_pretrained(tmp_path)
    assert reloaded.name_or_path == str(tmp_path)
    reloaded_settings, settings = (processor_for_model(m).feature_extractor.to_dict() for m in (reloaded, model))
    assert reloaded_settings.pop("auto_map", None) == settings.pop("auto_map", None)  # saving wrote it to both
    assert reloaded_settings == settings
    for name, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], value), name
    assert reloaded.classify(example_clouds, LABELS) == model.classify(example_clouds, LABELS)
    auto = AutoModel.from_pretrained(tmp_path)
    assert isinstance(auto, PointCLIPModel) and isinstance(AutoConfig.from_pretrained(tmp_path), PointCLIPConfig)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), pointclip_hf.PointCLIPProcessor)


def test_adapter_model_requires_its_labels(tiny_clip_dir, example_clouds):
    model = PointCLIPModel.from_pretrained(
        tiny_clip_dir, projection_style="pointclip_v1_fewshot", use_adapter=True, label_names=LABELS
    )
    with pytest.raises(ValueError, match="trained on the labels"):
        model.classify(example_clouds[0], ["dog", "cat"])


def test_loading_fails_loudly_without_or_with_bad_adapter_weights(tiny_clip_dir, tmp_path):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, projection_style="pointclip_v1_fewshot", use_adapter=True)
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "model.safetensors").read_bytes()[:100])
    with pytest.raises(ValueError, match="not a valid safetensors"):
        PointCLIPModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(OSError, match="weights are missing"):
        PointCLIPModel.from_pretrained(tmp_path)
    wide = PointCLIPModel.from_pretrained(tiny_clip_dir, projection_style="pointclip_v2", use_adapter=True)
    wide.save_pretrained(tmp_path)
    config = PointCLIPConfig.from_pretrained(tmp_path)
    config.projection_style, config.num_views = "pointclip_v1", 6
    config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="does not fit this model"):
        PointCLIPModel.from_pretrained(tmp_path)


def test_missing_base_clip_is_an_error_not_a_random_model(tiny_clip_dir, tmp_path):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    model.save_pretrained(tmp_path)
    with pytest.raises(OSError):
        PointCLIPModel.from_pretrained(tmp_path, clip_model_name_or_path=str(tmp_path / "nowhere"))


def test_self_contained_checkpoint_when_no_base_is_named(tiny_clip_dir, tmp_path, example_clouds):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    model.config.clip_model_name_or_path = None
    save_pointclip(model, tmp_path)
    assert any(k.startswith("clip.") for k in load_file(tmp_path / "model.safetensors"))
    reloaded = PointCLIPModel.from_pretrained(tmp_path)
    assert reloaded.classify(example_clouds, LABELS) == model.classify(example_clouds, LABELS)


def test_dtype_and_device(tiny_clip_dir, example_clouds):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, dtype=torch.bfloat16).to("cpu")
    assert model.dtype == torch.bfloat16
    result = model.classify(example_clouds[1], LABELS)
    assert all(np.isfinite(r["score"]) for r in result)


def test_pipeline_from_folder_and_instance(tiny_clip_dir, tmp_path, example_clouds, zero_shot_model):
    from transformers import pipeline

    save_pointclip(PointCLIPModel.from_pretrained(tiny_clip_dir), tmp_path)
    pipe = pipeline(pointclip_hf.PIPELINE_TASK, model=str(tmp_path))
    expected = zero_shot_model.classify(example_clouds[1], LABELS)
    assert same_predictions(pipe(example_clouds[1], candidate_labels=LABELS), expected)
    batch = pipe([example_clouds[0], example_clouds[1]], candidate_labels=LABELS, top_k=1)
    assert same_predictions(len(batch) == 2 and batch[1], expected[:1])
    direct = pipeline(pointclip_hf.PIPELINE_TASK, model=zero_shot_model)
    assert same_predictions(direct(example_clouds[1], candidate_labels=LABELS), expected)


def test_trust_remote_code_from_saved_folder(tiny_clip_dir, tmp_path, example_clouds):
    """In a fresh process without pointclip_hf importable, AutoModel/AutoProcessor load the copied code."""
    folder = save_pointclip(PointCLIPModel.from_pretrained(tiny_clip_dir), tmp_path / "model")
    assert (folder / "modeling_pointclip.py").exists() and (folder / "projection.py").exists()
    assert "import pointclip_hf" not in (folder / "modeling_pointclip.py").read_text()
    np.save(tmp_path / "cloud.npy", example_clouds[1])
    script = f"""
import json, numpy as np
from transformers import AutoModel, AutoProcessor
model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True)
processor = AutoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
print(json.dumps(model.classify(np.load({str(tmp_path / "cloud.npy")!r}), {LABELS!r}, processor=processor)))
"""
    environment = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    remote = run_without_the_package(script, folder=tmp_path, environment=environment)
    local = PointCLIPModel.from_pretrained(folder).classify(example_clouds[1], LABELS)
    assert same_predictions(remote, local)


def test_image_tower_chunking_and_compile_give_identical_features(tiny_clip_dir, example_clouds):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir)
    pixel_values = processor_for_model(model)(point_clouds=example_clouds)["pixel_values"]
    with torch.inference_mode():
        whole = model.get_view_features(pixel_values)
        model.config.max_images_per_batch = 5  # 12 images -> chunks of 5, 5, 2
        torch.testing.assert_close(model.get_view_features(pixel_values), whole, rtol=1e-5, atol=1e-6)
        model.compile_image_tower(backend="eager")
        torch.testing.assert_close(model.get_view_features(pixel_values), whole, rtol=1e-5, atol=1e-6)
    with pytest.raises(StrictDataclassError, match="max_images_per_batch must be at least 1"):
        PointCLIPConfig(max_images_per_batch=0)


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(projection_style="pointclip_v1", num_views=10), "does not match projection_style"),
        (dict(view_weights=[1.0, -1.0, 1, 1, 1, 1]), "non-negative"),
        (dict(view_weights=[0, 0, 0, 0, 0, 0]), "all zero"),
        (dict(prompt_templates=["no placeholder"]), "exactly one"),
        (dict(label_names=["a", "a"]), "duplicates"),
        (dict(num_views="six"), "num_views"),
    ],
)
def test_config_validation_names_the_field(fields, match):
    with pytest.raises(StrictDataclassError, match=match):
        PointCLIPConfig(**fields)
