"""`transformers.Trainer` on a PointCLIP few-shot model: plain datasets, no custom collator, `eval_loss`, and a saved
model that reloads to the same logits. Only the adapter trains."""

import pytest
import torch
from conftest import SHAPE_CLASSES, make_shape_dataset
from datasets import Dataset
from transformers import Trainer, TrainingArguments
from transformers.utils import find_labels

from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor
from pointclip_hf.training import build_few_shot_model

pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def model_and_processor(tiny_clip_dir):
    model = build_few_shot_model(tiny_clip_dir, SHAPE_CLASSES, seed=0)
    model.config.clip_model_name_or_path = str(tiny_clip_dir)
    processor = PointCLIPProcessor(
        PointCLIPFeatureExtractor("pointclip_v1_fewshot", num_points=128, image_size=32), model.processor.tokenizer
    )
    return model, processor


def pixel_dataset(processor, seed: int, per_class: int) -> Dataset:
    shapes = make_shape_dataset(seed, per_class, num_points=128).with_format("numpy")
    pixel_values = processor.feature_extractor(list(shapes["points"]))["pixel_values"]
    return Dataset.from_dict({"pixel_values": pixel_values.numpy(), "labels": shapes["label"]}).with_format("torch")


def arguments(tmp_path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4, num_train_epochs=2,
        learning_rate=0.01, report_to=[], save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
    )  # fmt: skip


def test_only_labels_is_a_label_and_clip_is_frozen(model_and_processor):
    model, _ = model_and_processor
    assert find_labels(PointCLIPModel) == ["labels"]
    assert not any(parameter.requires_grad for parameter in model.clip.parameters())
    assert all(parameter.requires_grad for parameter in model.adapter.parameters())
    assert model.config.id2label == dict(enumerate(SHAPE_CLASSES))
    assert model.config.label2id == {name: index for index, name in enumerate(SHAPE_CLASSES)}


def test_trainer_trains_evaluates_saves_and_reloads(model_and_processor, tmp_path):
    model, processor = model_and_processor
    logit_scale = model.clip.logit_scale.detach().clone()
    adapter_before = {key: value.clone() for key, value in model.adapter.state_dict().items()}
    train, validation = pixel_dataset(processor, 0, 4), pixel_dataset(processor, 1, 2)
    trainer = Trainer(model=model, args=arguments(tmp_path / "run"), train_dataset=train, eval_dataset=validation)
    trainer.train()
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and metrics["eval_loss"] > 0
    assert torch.equal(model.clip.logit_scale, logit_scale)
    assert any(not torch.equal(value, adapter_before[key]) for key, value in model.adapter.state_dict().items())
    trainer.save_model(str(tmp_path / "saved"))
    reloaded = PointCLIPModel.from_pretrained(tmp_path / "saved")
    batch = validation[:4]["pixel_values"]
    with torch.inference_mode():
        assert torch.equal(reloaded(pixel_values=batch).logits, model.eval()(pixel_values=batch).logits)


def test_view_features_dataset(model_and_processor, tmp_path):
    model, processor = model_and_processor
    pixels = pixel_dataset(processor, 2, 2)[:]
    with torch.inference_mode():
        features = model.get_view_features(pixels["pixel_values"])
    dataset = Dataset.from_dict({"view_features": features.numpy(), "labels": pixels["labels"].numpy()})
    trainer = Trainer(model=model, args=arguments(tmp_path), train_dataset=dataset.with_format("torch"))
    assert trainer.train().training_loss > 0


def test_trainable_clip_is_not_silently_dropped(model_and_processor, tmp_path):
    model, _ = model_and_processor
    model.clip.logit_scale.requires_grad_(True)
    try:
        with pytest.raises(ValueError, match="CLIP weights are trainable"):
            model.save_pretrained(tmp_path)
    finally:
        model.clip.logit_scale.requires_grad_(False)
