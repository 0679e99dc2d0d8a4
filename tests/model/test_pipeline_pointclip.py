"""The `point-cloud-zero-shot-classification` pipeline: parity with `zero-shot-image-classification` and the same
rules and results as `model.classify`."""

import numpy as np
import pytest
import torch
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from pointclip_hf import (
    PART_SEGMENTATION_TASK,
    PIPELINE_TASK,
    PointCLIPForZeroShotPartSegmentation,
    PointCLIPModel,
    PointCloudZeroShotClassificationPipeline,
)

LABELS = ["cube", "sphere", "cone"]


@pytest.fixture(scope="module")
def pipe(tiny_clip_dir):
    return pipeline(PIPELINE_TASK, model=str(tiny_clip_dir))


def test_registered_with_a_default_model():
    task = PIPELINE_REGISTRY.check_task(PIPELINE_TASK)[1]
    assert task["impl"] is PointCloudZeroShotClassificationPipeline
    assert task["default"]["model"] == ("openai/clip-vit-base-patch16", "main")


def test_no_model_loads_the_default_checkpoint(hub_with_default_clip, example_clouds):
    pipe = pipeline(PIPELINE_TASK)  # the default checkpoint, served by the local Hub as the tiny CLIP
    assert isinstance(pipe.model, PointCLIPModel)
    assert pipe.model.config.clip_model_name_or_path == "openai/clip-vit-base-patch16"
    assert sorted(p["label"] for p in pipe(example_clouds[0], candidate_labels=LABELS)) == sorted(LABELS)
    segmenter = pipeline(PART_SEGMENTATION_TASK)
    assert isinstance(segmenter.model, PointCLIPForZeroShotPartSegmentation)
    assert segmenter.model.config.clip_model_name_or_path == "openai/clip-vit-base-patch16"


def test_one_result_per_cloud(pipe, example_clouds):
    single = pipe(example_clouds[0], candidate_labels=LABELS)
    assert isinstance(single, list) and isinstance(single[0], dict) and len(single) == 3
    batch = pipe(example_clouds, candidate_labels=LABELS)
    assert len(batch) == 2 and batch[0] == single
    assert pipe(list(example_clouds), candidate_labels=LABELS) == batch
    as_lists = pipe(example_clouds[0].tolist(), candidate_labels=LABELS)  # one cloud as nested lists (float64)
    assert as_lists == pipe(example_clouds[0].astype(np.float64), candidate_labels=LABELS)


def test_batch_size_does_not_change_results(pipe, example_clouds):
    clouds = [example_clouds[0], example_clouds[1], example_clouds[0][:500]]
    one_by_one = pipe(clouds, candidate_labels=LABELS)
    assert pipe(clouds, candidate_labels=LABELS, batch_size=2) == one_by_one
    assert pipe.model.classify(clouds, LABELS, batch_size=3) == one_by_one


def test_hypothesis_template_is_the_prompt(pipe, tiny_clip_dir, example_clouds):
    template = "a rendered depth image of a {}."
    templated = PointCLIPModel.from_pretrained(tiny_clip_dir, prompt_templates=[template])
    expected = templated.classify(example_clouds[0], LABELS)
    assert pipe(example_clouds[0], candidate_labels=LABELS, hypothesis_template=template) == expected
    assert pipe(example_clouds[0], candidate_labels=LABELS) != expected
    with pytest.raises(ValueError, match="hypothesis_template"):
        pipe(example_clouds[0], candidate_labels=LABELS, hypothesis_template="no placeholder")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(candidate_labels=LABELS, not_a_parameter=1), TypeError, "unexpected arguments"),
        (dict(candidate_labels=LABELS, top_k=0), ValueError, "top_k"),
        (dict(candidate_labels=LABELS, top_k=True), ValueError, "top_k"),
        (dict(candidate_labels=["cube", "cube"]), ValueError, "duplicates"),
        (dict(candidate_labels=[]), ValueError, "empty"),
        (dict(), ValueError, "candidate_labels"),
    ],
)
def test_bad_arguments_are_refused(pipe, example_clouds, kwargs, error, match):
    with pytest.raises(error, match=match):
        pipe(example_clouds[0], **kwargs)
    if "not_a_parameter" not in kwargs:
        with pytest.raises(error, match=match):
            pipe.model.classify(example_clouds[0], kwargs.get("candidate_labels"), top_k=kwargs.get("top_k"))


def test_adapter_labels_rule_is_the_same_everywhere(tiny_clip_dir, example_clouds):
    model = PointCLIPModel.from_pretrained(tiny_clip_dir, projection_style="pointclip_v1_fewshot", use_adapter=True,
                                           label_names=LABELS)  # fmt: skip
    pipe = PointCloudZeroShotClassificationPipeline(model=model, device=model.device)
    in_other_order = pipe(example_clouds[0], candidate_labels=LABELS[::-1])
    assert {p["label"] for p in in_other_order} == set(LABELS)
    assert pipe(example_clouds[0]) == model.classify(example_clouds[0])  # defaults to the adapter's labels
    for call in (lambda: pipe(example_clouds[0], candidate_labels=["cube", "torus"]),
                 lambda: model.classify(example_clouds[0], ["cube", "torus"])):  # fmt: skip
        with pytest.raises(ValueError, match="trained on the labels"):
            call()


def test_classify_and_pipeline_agree_bitwise(pipe, example_clouds):
    model = pipe.model
    assert pipe(example_clouds, candidate_labels=LABELS, top_k=2) == model.classify(example_clouds, LABELS, top_k=2)
    scores = [p["score"] for p in pipe(example_clouds[0], candidate_labels=LABELS)]
    assert model.device == torch.device("cpu") and np.isclose(sum(scores), 1)
