"""Streaming evaluation and file classification (`pointclip_hf.evaluation`): metrics against a naive computation,
the predictions file, resuming, fingerprints, workers and bad input."""

import contextlib
import json
import os

import numpy as np
import pytest
import torch
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features, Value
from PIL import Image
from transformers import AutoTokenizer, CLIPConfig

from pointclip_hf import PointCLIPConfig, PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor
from pointclip_hf.evaluation import EvaluationReport, classify_files, evaluate
from pointclip_hf.model.pipeline_pointclip import label_embeddings
from pointclip_hf.model.processing_pointclip import processor_for_model
from pointclip_hf.visualization import save_confusion_matrix_image

LABELS = ["cube", "sphere", "cone"]
FEATURES = Features({"points": Array2D((None, 3), "float32"), "label": ClassLabel(names=LABELS)})


def make_clouds(count: int, seed: int = 0) -> list[np.ndarray]:
    """Clouds of different sizes (ragged), roughly a cube, a sphere or a cone each."""
    rng = np.random.default_rng(seed)
    clouds = []
    for i in range(count):
        n = int(rng.integers(200, 500))
        shape = i % 3
        if shape == 0:
            cloud = rng.uniform(-1, 1, (n, 3))
        elif shape == 1:
            cloud = rng.normal(size=(n, 3))
            cloud /= np.linalg.norm(cloud, axis=1, keepdims=True)
        else:
            height = rng.uniform(0, 1, n)
            angle = rng.uniform(0, 2 * np.pi, n)
            cloud = np.stack([(1 - height) * np.cos(angle), (1 - height) * np.sin(angle), height], axis=1)
        clouds.append((cloud + rng.normal(scale=0.02, size=cloud.shape)).astype(np.float32))
    return clouds


def make_dataset(count: int = 11, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed + 1)
    return Dataset.from_dict(
        {"points": make_clouds(count, seed), "label": rng.integers(0, len(LABELS), count).tolist()}, features=FEATURES
    )


def small_processor(clip_dir, **kwargs) -> PointCLIPProcessor:
    extractor = PointCLIPFeatureExtractor(num_points=kwargs.pop("num_points", 256), image_size=32, **kwargs)
    return PointCLIPProcessor(extractor, AutoTokenizer.from_pretrained(clip_dir))


def load_model(clip_dir, **config_kwargs) -> PointCLIPModel:
    config = None
    if config_kwargs:
        config = PointCLIPConfig(
            clip_config=CLIPConfig.from_pretrained(clip_dir), clip_model_name_or_path=str(clip_dir), **config_kwargs
        )
    model = PointCLIPModel.from_pretrained(clip_dir, config=config)
    model.processor = small_processor(clip_dir)
    return model


@pytest.fixture(scope="module")
def model(tiny_clip_dir):
    return load_model(tiny_clip_dir)


@pytest.fixture(scope="module")
def dataset():
    return make_dataset()


@pytest.fixture(scope="module")
def naive_logits(model, dataset):
    """Logits computed cloud by cloud with the plain model API."""
    text_embeds = label_embeddings(model, processor_for_model(model), LABELS)
    rows = []
    with torch.inference_mode():
        for row in dataset.with_format("numpy"):
            pixel_values = processor_for_model(model).feature_extractor(row["points"])["pixel_values"]
            rows.append(model(pixel_values=pixel_values, text_embeds=text_embeds).logits[0])
    return torch.stack(rows)


@pytest.fixture(scope="module")
def reference_run(model, dataset, tmp_path_factory):
    """A complete run (batch_size 3), its report and the bytes of its predictions file."""
    output_dir = tmp_path_factory.mktemp("reference")
    report = evaluate(model, dataset, batch_size=3, output_dir=output_dir, progress=False, top_k=2)
    return report, (output_dir / "predictions.jsonl").read_bytes()


@contextlib.contextmanager
def count_forward(model):
    """Record the batch size of every forward call of `model`."""
    sizes = []
    handle = model.register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(kwargs["pixel_values"].shape[0]), with_kwargs=True
    )
    try:
        yield sizes
    finally:
        handle.remove()


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


# ------------------------------------------------------------------------------------------------ metrics and files


def test_report_matches_naive_computation(model, dataset, naive_logits, reference_run):
    report, _ = reference_run
    truth = np.array(dataset["label"])
    predicted = naive_logits.argmax(dim=-1).numpy()
    confusion = np.zeros((3, 3), dtype=int)
    for t, p in zip(truth, predicted):
        confusion[t, p] += 1
    assert report.num_samples == len(dataset) == 11
    assert report.confusion_matrix == confusion.tolist()
    assert report.accuracy == pytest.approx((truth == predicted).mean())
    for i, name in enumerate(LABELS):
        members = truth == i
        expected = (predicted[members] == i).mean() if members.any() else None
        assert report.per_class_accuracy[name] == pytest.approx(expected)
    present = [v for v in report.per_class_accuracy.values() if v is not None]
    assert report.mean_class_accuracy == pytest.approx(np.mean(present))


def test_predictions_file_content(dataset, naive_logits, reference_run):
    _, content = reference_run
    lines = content.decode("utf-8").splitlines()
    header = json.loads(lines[0])["header"]
    assert header["format"] == "pointclip-predictions/1" and header["task"] == "evaluate"
    fingerprint = header["fingerprint"]
    assert fingerprint["labels"] == LABELS and fingerprint["top_k"] == 2
    assert fingerprint["data"]["num_samples"] == 11 and fingerprint["data"]["fingerprint"] == dataset._fingerprint
    assert fingerprint["processor"]["num_points"] == 256
    records = [json.loads(line) for line in lines[1:]]
    assert [r["index"] for r in records] == list(range(11))
    scores = naive_logits.softmax(dim=-1)
    for record, label, row in zip(records, dataset["label"], scores):
        assert record["label"] == LABELS[label] and record["label_id"] == label
        assert record["prediction_id"] == int(row.argmax()) and record["prediction"] == LABELS[int(row.argmax())]
        assert record["correct"] == (label == int(row.argmax()))
        assert record["score"] == pytest.approx(float(row.max()), abs=1e-5)
        assert len(record["top_k"]) == 2
        top = row.topk(2)
        assert [t["label"] for t in record["top_k"]] == [LABELS[i] for i in top.indices.tolist()]
        assert [t["score"] for t in record["top_k"]] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_report_files_and_setup(model, dataset, reference_run, tmp_path):
    report, _ = reference_run
    report.save(tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved == report.to_dict()
    assert EvaluationReport.load(tmp_path) == report
    with Image.open(tmp_path / "confusion_matrix.png") as image:
        image.load()
        assert image.format == "PNG" and image.width > 100 and image.height > 100
    setup = report.setup
    assert setup["model_name_or_path"] == str(model.name_or_path)
    assert setup["projection_style"] == "pointclip_v1" and setup["num_views"] == 6
    assert setup["prompt_templates"] == list(model.config.prompt_templates)
    assert setup["label_names"] == LABELS and setup["use_adapter"] is False and setup["dtype"] == "float32"
    assert setup["num_points"] == 256 and setup["sampling"] == "random" and setup["image_size"] == 32
    assert setup["dataset"]["num_samples"] == 11 and setup["runtime"]["num_processes"] == 1
    assert len(setup["config_sha256"]) == 64


def test_output_dir_gets_all_files(model, dataset, tmp_path):
    output_dir = tmp_path / "new" / "folder"
    evaluate(model, dataset.select(range(4)), batch_size=4, output_dir=output_dir, progress=False)
    assert sorted(os.listdir(output_dir)) == ["confusion_matrix.png", "predictions.jsonl", "report.json"]


def test_without_output_dir_and_batch_size_independence(model, dataset, reference_run):
    report, _ = reference_run
    for batch_size in (1, 4, 64):
        other = evaluate(model, dataset, batch_size=batch_size, progress=False)
        assert other.confusion_matrix == report.confusion_matrix
        assert other.per_class_accuracy == report.per_class_accuracy


def test_num_workers_give_identical_results(model, dataset, reference_run, tmp_path):
    _, content = reference_run
    evaluate(model, dataset, batch_size=3, num_workers=2, output_dir=tmp_path, progress=False, top_k=2)
    assert (tmp_path / "predictions.jsonl").read_bytes() == content


def test_progress_bar(model, dataset, capsys):
    small = dataset.select(range(2))
    evaluate(model, small, batch_size=2, progress=False)
    assert "Evaluating" not in capsys.readouterr().err
    evaluate(model, small, batch_size=2, progress=True)
    assert "Evaluating" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ resuming


def test_resume_after_interruption(model, dataset, reference_run, tmp_path):
    report, content = reference_run
    lines = content.splitlines(keepends=True)
    # header + 4 complete records + half of the 5th record (the run died mid-write)
    (tmp_path / "predictions.jsonl").write_bytes(b"".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    with count_forward(model) as sizes:
        resumed = evaluate(model, dataset, batch_size=3, output_dir=tmp_path, progress=False, top_k=2)
    assert sum(sizes) == 11 - 4  # only the missing clouds were computed
    assert (tmp_path / "predictions.jsonl").read_bytes() == content
    assert resumed.confusion_matrix == report.confusion_matrix and resumed.accuracy == report.accuracy


def test_resume_of_a_finished_run_does_no_work(model, dataset, reference_run, tmp_path):
    report, content = reference_run
    (tmp_path / "predictions.jsonl").write_bytes(content)
    with count_forward(model) as sizes:
        again = evaluate(model, dataset, batch_size=5, output_dir=tmp_path, progress=False, top_k=2)
    assert sizes == []
    assert again.confusion_matrix == report.confusion_matrix
    assert (tmp_path / "predictions.jsonl").read_bytes() == content


def test_resume_with_only_a_partial_header(model, dataset, reference_run, tmp_path):
    _, content = reference_run
    (tmp_path / "predictions.jsonl").write_bytes(content[:20])
    evaluate(model, dataset, batch_size=3, output_dir=tmp_path, progress=False, top_k=2)
    assert (tmp_path / "predictions.jsonl").read_bytes() == content


@pytest.mark.parametrize(
    "change, what",
    [
        (dict(dataset=make_dataset(10)), "data.num_samples"),
        (dict(dataset=make_dataset(11, seed=5)), "data.fingerprint"),
        (dict(label_names=["box", "ball", "cone"]), "labels"),
        (dict(top_k=3), "top_k"),
        (dict(processor="num_points=128"), "processor.num_points"),
        (dict(view_weights=[1, 1, 1, 1, 1, 2]), "config_sha256"),
    ],
)
def test_fingerprint_mismatch_is_an_error_and_leaves_the_file(
    model, dataset, reference_run, tiny_clip_dir, tmp_path, change, what
):
    _, content = reference_run
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(content[: len(content) // 2])  # an interrupted run
    before = path.read_bytes()
    kwargs = dict(batch_size=3, output_dir=tmp_path, progress=False, top_k=2)
    run_model, run_dataset = model, change.pop("dataset", dataset)
    if "processor" in change:
        kwargs["processor"] = small_processor(tiny_clip_dir, num_points=128)
        change.pop("processor")
    if "view_weights" in change:
        run_model = load_model(tiny_clip_dir, view_weights=change.pop("view_weights"))
    kwargs.update(change)
    with count_forward(run_model) as sizes, pytest.raises(ValueError, match="different run") as error:
        evaluate(run_model, run_dataset, **kwargs)
    assert what in str(error.value) and "resume=False" in str(error.value)
    assert sizes == []
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["predictions.jsonl"]


def test_resume_false_overwrites(model, dataset, reference_run, tmp_path):
    _, content = reference_run
    path = tmp_path / "predictions.jsonl"
    other = make_dataset(5, seed=3)
    evaluate(model, other, batch_size=3, output_dir=tmp_path, progress=False, top_k=2)
    with pytest.raises(ValueError, match="different run"):
        evaluate(model, dataset, batch_size=3, output_dir=tmp_path, progress=False, top_k=2)
    evaluate(model, dataset, batch_size=3, output_dir=tmp_path, progress=False, top_k=2, resume=False)
    assert path.read_bytes() == content


def test_foreign_or_damaged_files_are_errors(model, dataset, reference_run, tmp_path):
    _, content = reference_run
    path = tmp_path / "predictions.jsonl"
    for bad in (b"id,label\n1,chair\n", b'{"something": "else"}\n', b"not json at all"):
        path.write_bytes(bad)
        with pytest.raises(ValueError, match="not a PointCLIP predictions file"):
            evaluate(model, dataset, batch_size=3, output_dir=tmp_path, progress=False, top_k=2)
        assert path.read_bytes() == bad
    lines = content.splitlines(keepends=True)
    for damaged in (
        b"".join(lines[:3]) + b"{broken\n" + b"".join(lines[4:6]),  # a malformed line in the middle
        b"".join(lines[:3]) + b"".join(lines[4:6]),  # a record missing
        b"".join(lines[:3]) + lines[2] + b"".join(lines[3:5]),  # a duplicate
    ):
        path.write_bytes(damaged)
        with pytest.raises(ValueError, match="damaged at line"):
            evaluate(model, dataset, batch_size=3, output_dir=tmp_path, progress=False, top_k=2)
        assert path.read_bytes() == damaged


def test_leftover_shard_files_need_the_same_number_of_processes(model, dataset, reference_run, tmp_path):
    _, content = reference_run
    header = json.loads(content.splitlines()[0])["header"]
    shard = tmp_path / "predictions.rank1.jsonl"
    shard.write_text(json.dumps({"header": {**header, "shard": {"rank": 1, "world_size": 2}}}) + "\n")
    with pytest.raises(ValueError, match="2 processes"):
        evaluate(model, dataset, batch_size=3, output_dir=tmp_path, progress=False, top_k=2)
    evaluate(model, dataset, batch_size=3, output_dir=tmp_path, progress=False, top_k=2, resume=False)
    assert sorted(os.listdir(tmp_path)) == ["confusion_matrix.png", "predictions.jsonl", "report.json"]
    assert (tmp_path / "predictions.jsonl").read_bytes() == content


# ------------------------------------------------------------------------------------------------ classify_files


@pytest.fixture(scope="module")
def cloud_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clouds")
    (folder / "nested").mkdir()
    clouds = make_clouds(7, seed=2)
    for i, cloud in enumerate(clouds):
        np.save(folder / ("nested" if i % 3 == 0 else ".") / f"cloud_{i}.npy", cloud)
    (folder / "notes.txt.bak").write_text("not a cloud")
    (folder / ".hidden").mkdir()
    np.save(folder / ".hidden" / "skip.npy", clouds[0])
    return folder


def test_classify_files_matches_model_classify(model, cloud_folder, tmp_path):
    output = tmp_path / "out" / "predictions.jsonl"
    results = classify_files(model, cloud_folder, LABELS, batch_size=3, output_path=output, progress=False)
    paths = sorted(str(p) for p in cloud_folder.rglob("*.npy") if ".hidden" not in p.parts)
    assert [r["path"] for r in results] == paths and [r["index"] for r in results] == list(range(7))
    expected = model.classify(paths, LABELS)
    for record, predictions in zip(results, expected):
        assert [p["label"] for p in record["top_k"]] == [p["label"] for p in predictions]
        assert [p["score"] for p in record["top_k"]] == pytest.approx([p["score"] for p in predictions], abs=1e-5)
        assert record["prediction"] == predictions[0]["label"]
        assert record["score"] == pytest.approx(predictions[0]["score"], abs=1e-5)
    lines = read_jsonl(output)
    assert lines[0]["header"]["task"] == "classify_files" and lines[1:] == results

    top2 = classify_files(model, paths[:2], "cube, sphere, cone", top_k=2, progress=False)
    assert [len(r["top_k"]) for r in top2] == [2, 2] and top2[0]["path"] == paths[0]
    single = classify_files(model, paths[1], LABELS, progress=False)
    assert len(single) == 1 and single[0]["path"] == paths[1]


def test_classify_files_resume_and_workers(model, cloud_folder, tmp_path):
    first = tmp_path / "first.jsonl"
    results = classify_files(model, cloud_folder, LABELS, batch_size=2, output_path=first, progress=False)
    content = first.read_bytes()
    lines = content.splitlines(keepends=True)
    second = tmp_path / "second.jsonl"
    second.write_bytes(b"".join(lines[:4]) + lines[4][:-10])
    with count_forward(model) as sizes:
        resumed = classify_files(
            model, cloud_folder, LABELS, batch_size=2, output_path=second, progress=False, num_workers=2
        )
    assert sum(sizes) == 7 - 3
    assert resumed == results and second.read_bytes() == content
    with pytest.raises(ValueError, match="different run"):
        classify_files(model, cloud_folder, LABELS[:2], batch_size=2, output_path=second, progress=False)
    assert second.read_bytes() == content


def test_classify_files_errors(model, cloud_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No point-cloud files"):
        classify_files(model, tmp_path / "empty", LABELS, progress=False)
    with pytest.raises(ValueError, match="empty list"):
        classify_files(model, [], LABELS, progress=False)
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        classify_files(model, [tmp_path / "missing.npy"], LABELS, progress=False)
    (tmp_path / "cloud.bin").write_bytes(b"\0" * 12)
    with pytest.raises(ValueError, match="Unsupported"):
        classify_files(model, [tmp_path / "cloud.bin"], LABELS, progress=False)
    with pytest.raises(OSError, match="Cannot write predictions to .*: Is a directory"):
        classify_files(model, cloud_folder, LABELS, output_path=tmp_path, progress=False)
    with pytest.raises(ValueError, match="candidate labels"):
        classify_files(model, cloud_folder, None, progress=False)
    with pytest.raises(ValueError, match="duplicates"):
        classify_files(model, cloud_folder, ["cube", "cube"], progress=False)
    np.save(tmp_path / "flat.npy", np.zeros((10, 3), np.float32))  # degenerate: all points identical
    with pytest.raises(ValueError, match="flat.npy.*degenerate"):
        classify_files(model, [tmp_path / "flat.npy"], LABELS, progress=False)


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True])
def test_bad_batch_size(model, dataset, cloud_folder, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(model, dataset, batch_size=batch_size, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        classify_files(model, cloud_folder, LABELS, batch_size=batch_size, progress=False)


def test_other_bad_arguments(model, dataset):
    with pytest.raises(ValueError, match="num_workers"):
        evaluate(model, dataset, num_workers=-1, progress=False)
    with pytest.raises(ValueError, match="top_k"):
        evaluate(model, dataset, top_k=0, progress=False)


def test_unwritable_output_is_detected_before_any_compute(model, dataset, cloud_folder, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with count_forward(model) as sizes:
        with pytest.raises(OSError, match="Cannot write"):
            evaluate(model, dataset, output_dir=blocker / "results", progress=False)
        with pytest.raises(OSError, match="Cannot write"):
            evaluate(model, dataset, output_dir=blocker, progress=False)
        with pytest.raises(OSError, match="Cannot write"):
            classify_files(model, cloud_folder, LABELS, output_path=blocker / "out.jsonl", progress=False)
    assert sizes == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_output_dir(model, dataset, cloud_folder, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OSError, match="Cannot write"):
            evaluate(model, dataset, output_dir=locked, progress=False)
        with pytest.raises(OSError, match="Cannot write"):
            classify_files(model, cloud_folder, LABELS, output_path=locked / "out.jsonl", progress=False)
    finally:
        locked.chmod(0o700)


def test_permission_denied_is_reported_clearly(model, dataset, cloud_folder, tmp_path, monkeypatch):
    """The same check as above, simulated, for runs as root (which may write anywhere)."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pointclip_hf.evaluation.checks.tempfile.mkstemp", refuse)
    with count_forward(model) as sizes:
        with pytest.raises(OSError, match="Cannot write evaluation results.*Permission denied"):
            evaluate(model, dataset, output_dir=tmp_path, progress=False)
        with pytest.raises(OSError, match="Cannot write predictions.*Permission denied"):
            classify_files(model, cloud_folder, LABELS, output_path=tmp_path / "out.jsonl", progress=False)
    assert sizes == [] and os.listdir(tmp_path) == []


def test_dataset_errors(model, dataset):
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, dataset.select([]), progress=False)
    with pytest.raises(TypeError, match="one split"):
        evaluate(model, DatasetDict(test=dataset), progress=False)
    with pytest.raises(ValueError, match="lacks the column"):
        evaluate(model, dataset.remove_columns("label"), progress=False)
    plain = dataset.cast_column("label", Value("int64"))
    with pytest.raises(ValueError, match="not a ClassLabel"):
        evaluate(model, plain, progress=False)
    assert evaluate(model, plain, label_names=LABELS, progress=False).num_samples == 11
    with pytest.raises(ValueError, match="label_names has 2 names"):
        evaluate(model, dataset, label_names=["cube", "sphere"], progress=False)
    unlabelled = Dataset.from_dict({"points": make_clouds(2), "label": [0, -1]}, features=FEATURES)
    with pytest.raises(ValueError, match="row 1 has label -1"):
        evaluate(model, unlabelled, progress=False)


def test_adapter_model_labels(tiny_clip_dir, dataset, naive_logits):
    adapter_labels = ["box", "ball", "cone"]
    adapter_model = load_model(tiny_clip_dir, use_adapter=True, label_names=adapter_labels)
    with pytest.raises(ValueError, match="Label mismatch") as error:
        evaluate(adapter_model, dataset, progress=False)
    assert str(LABELS) in str(error.value) and str(adapter_labels) in str(error.value)
    with pytest.raises(ValueError, match="Label mismatch"):
        classify_files(adapter_model, [], LABELS, progress=False)

    adapter_model.train()  # evaluation must switch the adapter's dropout off, and restore the mode afterwards
    report = evaluate(adapter_model, dataset, label_names=adapter_labels, progress=False, batch_size=4)
    assert adapter_model.training
    adapter_model.eval()
    again = evaluate(adapter_model, dataset, label_names=adapter_labels, progress=False, batch_size=11)
    assert report.confusion_matrix == again.confusion_matrix
    assert report.setup["use_adapter"] is True and len(report.setup["adapter_sha256"]) == 64


def test_large_class_prompts_are_hashed_in_the_setup(tiny_clip_dir, dataset):
    prompts = {name: [f"a short sentence number {i} about a {name}." for i in range(160)] for name in LABELS}
    prompted = load_model(tiny_clip_dir, class_prompts=prompts)
    report = evaluate(prompted, dataset.select(range(3)), progress=False)
    summary = report.setup["class_prompts"]
    assert summary["num_classes"] == 3 and summary["num_sentences"] == 480 and len(summary["sha256"]) == 64
    small = {"cube": ["a box."]}
    assert (
        evaluate(load_model(tiny_clip_dir, class_prompts=small), dataset.select(range(3)), progress=False).setup[
            "class_prompts"
        ]
        == small
    )


@pytest.mark.parametrize("num_classes", [1, 5, 45])
def test_confusion_matrix_image(tmp_path, num_classes):
    rng = np.random.default_rng(num_classes)
    matrix = rng.integers(0, 9, (num_classes, num_classes))
    matrix[0] = 0  # a class without samples
    path = tmp_path / "matrix.png"
    save_confusion_matrix_image(matrix, [f"class_{i}" for i in range(num_classes)], path, title="test")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 100 and image.height >= 100
