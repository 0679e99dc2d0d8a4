"""Model cards: Hub metadata round trip, body contents, a usage snippet that runs, and the example card."""

import contextlib
import io
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard

from pointclip_hf.evaluation import EvaluationReport
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.model_card import TAGS, build_model_card, model_card_template_path
from pointclip_hf.training import TrainingConfig, build_few_shot_model

LABELS = ["cube", "sphere", "disc", "line"]
REPO_ID = "someone/pointclip-tiny-4shot"
EXAMPLE_CARD = Path(__file__).resolve().parent.parent / "model_cards" / "pointclip_adapter.md"


@pytest.fixture(scope="module")
def adapter_model(tiny_clip_dir):
    return build_few_shot_model(tiny_clip_dir, LABELS, seed=0)


@pytest.fixture(scope="module")
def evaluation():
    return {
        "accuracy": 0.875,
        "mean_class_accuracy": 0.8125,
        "num_samples": 24,
        "per_class_accuracy": {"cube": 1.0, "sphere": 0.75, "disc": 0.5, "line": 1.0},
        "split": "test",
    }


@pytest.fixture(scope="module")
def card(adapter_model, evaluation):
    training = {
        "best_epoch": 7,
        "best_validation_accuracy": 0.8,
        "history": [],
        "training_config": TrainingConfig(epochs=12, seed=5, device="cpu").to_dict(),
    }
    return build_model_card(
        adapter_model, training=training, evaluation=evaluation, dataset_name="modelnet40", shots=4, repo_id=REPO_ID
    )


def python_snippet(card: ModelCard) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card.text, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_metadata_round_trip(card, tiny_clip_dir, tmp_path):
    card.save(tmp_path / "README.md")
    data = ModelCard.load(tmp_path / "README.md").data
    assert data.base_model == str(tiny_clip_dir)
    assert data.library_name == "pointclip_hf" and data.license is None  # a local base CLIP's license is unknown
    assert data.tags == TAGS + ["arxiv:2112.02413"] and data.pipeline_tag == "other"
    assert data.datasets == ["jxie/modelnet40"]
    assert data.to_dict()["base_model_relation"] == "adapter"
    assert data.model_name == "pointclip-tiny-4shot"
    results = {result.metric_name: result for result in data.eval_results}
    assert set(results) == {"Overall accuracy", "Mean class accuracy"}
    overall = results["Overall accuracy"]
    assert overall.metric_type == "accuracy" and overall.metric_value == 0.875
    assert overall.dataset_type == "jxie/modelnet40" and overall.dataset_split == "test"
    assert overall.task_type == "other"
    assert results["Mean class accuracy"].metric_value == 0.8125


def test_body(card):
    text = card.text
    assert f'PointCLIPModel.from_pretrained("{REPO_ID}")' in python_snippet(card)
    assert f"labels = {LABELS!r}" in python_snippet(card)
    assert "4-shot" in text and "`pointclip_v1_fewshot`" in text and "**10 depth maps**" in text
    assert "| View weights | all 1 |" in text and "`point cloud of a big {}.`" in text
    assert "| `epochs` | 12 |" in text and "| `seed` | 5 |" in text and "`device`" not in text
    assert "Selected epoch: 7 (validation accuracy 80.00 %)" in text
    assert "| jxie/modelnet40 | test | Overall accuracy | 87.50 % |" in text
    assert "| sphere | 75.00 % |" in text and "Evaluated on 24 point clouds" in text
    assert "cube, sphere, disc, line" in text and "## Limitations" in text


def test_snippet_runs(adapter_model, tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    adapter_model.save_pretrained(model_dir)
    processor_for_model(adapter_model).save_pretrained(model_dir)
    snippet = python_snippet(build_model_card(adapter_model, repo_id=str(model_dir)))
    cloud = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    header = f"ply\nformat ascii 1.0\nelement vertex {len(cloud)}\n" + "".join(f"property float {a}\n" for a in "xyz")
    monkeypatch.chdir(tmp_path)
    Path("cloud.ply").write_text(header + "end_header\n" + "\n".join(" ".join(map(str, p)) for p in cloud) + "\n")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(snippet, "model-card-snippet", "exec"), {})
    predicted = re.findall(r"'label': '([^']+)'", output.getvalue())
    assert len(predicted) == 4 and set(predicted) == set(LABELS)


def test_without_evaluation_and_zero_shot(zero_shot_model, tmp_path):
    card = build_model_card(zero_shot_model, repo_id="someone/zero-shot")
    card.save(tmp_path / "README.md")
    data = ModelCard.load(tmp_path / "README.md").data
    assert data.eval_results is None and "model-index" not in card.content
    assert "few-shot" not in data.tags and "base_model_relation" not in data.to_dict()
    assert "No evaluation results" in card.text and "## Training" not in card.text
    assert '"chair", "table", "airplane"' in python_snippet(card)


def test_evaluation_report_object_and_checks(adapter_model):
    report = EvaluationReport(
        accuracy=0.5,
        per_class_accuracy={label: 0.5 for label in LABELS},
        num_samples=8,
        confusion_matrix=[],
        mean_class_accuracy=0.5,
    )
    card = build_model_card(adapter_model, evaluation=report, dataset_name="scanobjectnn")
    assert card.data.eval_results[0].metric_value == 0.5 and card.data.datasets == ["jxie/scanobjectnn"]
    with pytest.raises(ValueError, match="fraction"):
        build_model_card(adapter_model, evaluation={"accuracy": 87.5})
    with pytest.raises(ValueError, match="shots"):
        build_model_card(adapter_model, shots=0)


def test_example_card_is_current():
    writer = runpy.run_path(str(EXAMPLE_CARD.parents[1] / "examples" / "write_example_model_card.py"))
    assert model_card_template_path().is_file()
    assert EXAMPLE_CARD.read_text(encoding="utf-8") == str(writer["example_model_card"]()), (
        "model_cards/pointclip_adapter.md is stale: run `python examples/write_example_model_card.py`"
    )
    data = ModelCard.load(EXAMPLE_CARD).data
    assert data.base_model == "openai/clip-vit-base-patch16" and data.to_dict()["base_model_relation"] == "adapter"
