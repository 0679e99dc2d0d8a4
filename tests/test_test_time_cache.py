"""The test-time cache (TDA form): its caches and logits against the official TDA code after the same stream, the
same bits for the same order whatever the batch, its state saved and resumed, its settings in the run's fingerprint,
and the switches in `classify_files`, `evaluate`, the CLI and the demo."""

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_evaluate import LABELS, load_model, make_clouds, make_dataset, read_jsonl

from pointclip_hf.cli import main
from pointclip_hf.evaluation import classify_files, evaluate
from pointclip_hf.test_time_cache import TestTimeCache, TestTimeCacheConfig

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = json.loads((FIXTURES / "cache_golden.json").read_text())["tda"]


@pytest.fixture(scope="module")
def tda():
    return {key: torch.from_numpy(value) for key, value in np.load(FIXTURES / "tda_golden.npz").items()}


@pytest.fixture(scope="module")
def model(tiny_clip_dir):
    return load_model(tiny_clip_dir)


@pytest.fixture(scope="module")
def cloud_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clouds")
    for index, cloud in enumerate(make_clouds(9, seed=4)):
        np.save(folder / f"cloud_{index}.npy", cloud)
    return folder


def golden_config() -> TestTimeCacheConfig:
    positive, negative = GOLDEN["positive"], GOLDEN["negative"]
    return TestTimeCacheConfig(
        positive_shot_capacity=positive["shot_capacity"], positive_alpha=positive["alpha"],
        positive_beta=positive["beta"], negative_shot_capacity=negative["shot_capacity"],
        negative_alpha=negative["alpha"], negative_beta=negative["beta"],
        entropy_lower=negative["entropy_threshold"]["lower"], entropy_upper=negative["entropy_threshold"]["upper"],
        mask_lower=negative["mask_threshold"]["lower"], mask_upper=negative["mask_threshold"]["upper"],
    )  # fmt: skip


def run_stream(tda, batch_size: int, cache: TestTimeCache | None = None, start: int = 0):
    cache = cache or TestTimeCache(tda["clip_logits"].shape[1], golden_config())
    stream, logits = tda["stream"], tda["clip_logits"]
    adapted = [cache.adapt(stream[i : i + batch_size], logits[i : i + batch_size])
               for i in range(start, len(stream), batch_size)]  # fmt: skip
    return torch.cat(adapted), cache


# ------------------------------------------------------------------------------------------ against TDA


def test_caches_and_logits_equal_tda_after_the_same_stream(tda):
    """TDA's `run_test_tda` on the same stream: every cloud's final logits, then the contents of both caches."""
    assert TestTimeCacheConfig() == golden_config()  # the defaults are Point-Cache's ModelNet40 configuration
    adapted, cache = run_stream(tda, 1)
    assert (adapted - tda["final_logits"]).abs().max() < 1e-6
    for which in ("positive", "negative"):
        ours = cache.entries(which)
        assert len(ours["classes"]) == GOLDEN[f"{which}_size"]
        assert torch.equal(ours["classes"], tda[f"{which}_classes"])
        assert (ours["keys"] - tda[f"{which}_keys"]).abs().max() < 1e-12
        assert (ours["entropies"] - tda[f"{which}_entropies"]).abs().max() < 1e-12
    assert (cache.entries("negative")["probs"] - tda["negative_probs"]).abs().max() < 1e-12
    assert GOLDEN["positive_size"] == 18  # every class full: entries were replaced along the stream


def test_same_order_same_bits_whatever_the_batch(tda):
    one_by_one, _ = run_stream(tda, 1)
    for batch_size in (4, 7, 120):
        assert torch.equal(run_stream(tda, batch_size)[0], one_by_one)
    reordered = torch.randperm(len(tda["stream"]), generator=torch.Generator().manual_seed(0))
    other_order = {key: tda[key][reordered] for key in ("stream", "clip_logits")}
    assert not torch.equal(run_stream(other_order, 1)[0], one_by_one[reordered])  # the order matters, by design


def test_saved_state_continues_the_stream_bit_for_bit(tda, tmp_path):
    whole, _ = run_stream(tda, 5)
    cache = TestTimeCache(tda["clip_logits"].shape[1], golden_config())
    first = cache.adapt(tda["stream"][:50], tda["clip_logits"][:50])
    cache.save(tmp_path / "state.safetensors", {"note": "half way"})
    restored, metadata = TestTimeCache.load(tmp_path / "state.safetensors")
    assert metadata["note"] == "half way" and restored.num_seen == 50 and restored.config == golden_config()
    rest, _ = run_stream(tda, 5, restored, start=50)
    assert torch.equal(torch.cat([first, rest]), whole)
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a usable test-time cache state"):
        TestTimeCache.load(tmp_path / "bad.safetensors")


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="positive_shot_capacity must be a positive integer"):
        TestTimeCacheConfig(positive_shot_capacity=0)
    with pytest.raises(ValueError, match="negative_alpha must be a finite number"):
        TestTimeCacheConfig(negative_alpha=float("nan"))
    with pytest.raises(ValueError, match="enable the positive or the negative cache"):
        TestTimeCacheConfig(positive=False, negative=False)
    with pytest.raises(ValueError, match="Unknown TestTimeCacheConfig settings"):
        TestTimeCacheConfig.from_dict({"shots": 3})


# ------------------------------------------------------------------------------------------ in runs


@contextlib.contextmanager
def dies_after(model, calls: int):
    """Make the model's forward raise after `calls` calls, as an interrupted run."""
    count = []

    def hook(module, args, kwargs):
        count.append(1)
        if len(count) > calls:
            raise KeyboardInterrupt("interrupted")

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def adaptive_run(model, folder, path, **kwargs):
    return classify_files(model, folder, LABELS, batch_size=2, output_path=path, progress=False, test_time_cache=True,
                          **kwargs)  # fmt: skip


def test_classify_files_is_deterministic_and_differs_from_plain(model, cloud_folder):
    plain = classify_files(model, cloud_folder, LABELS, batch_size=2, progress=False)
    adapted = classify_files(model, cloud_folder, LABELS, batch_size=2, progress=False, test_time_cache=True)
    assert classify_files(model, cloud_folder, LABELS, batch_size=5, progress=False, test_time_cache=True) == adapted
    assert [r["top_k"] for r in adapted] != [r["top_k"] for r in plain]
    custom = {"negative": False, "positive_beta": 5.0}
    assert classify_files(model, cloud_folder, LABELS, progress=False, test_time_cache=custom) != adapted


def test_resume_restores_the_cache(model, cloud_folder, tmp_path):
    reference = tmp_path / "reference.jsonl"
    expected = adaptive_run(model, cloud_folder, reference)
    state = tmp_path / "reference.test_time_cache.safetensors"
    final_state, metadata = TestTimeCache.load(state)
    assert final_state.num_seen == 9 and metadata["records"] == "9"

    path = tmp_path / "run.jsonl"
    with dies_after(model, 2), pytest.raises(KeyboardInterrupt):
        adaptive_run(model, cloud_folder, path)
    assert len(read_jsonl(path)) == 1 + 4
    lines = reference.read_bytes().splitlines(keepends=True)
    with open(path, "ab") as handle:  # records a run wrote before dying, without saving its cache
        handle.write(lines[5] + lines[6][:7])
    resumed = adaptive_run(model, cloud_folder, path)
    assert resumed == expected and path.read_bytes() == reference.read_bytes()
    restored, _ = TestTimeCache.load(tmp_path / "run.test_time_cache.safetensors")
    for which in ("positive", "negative"):
        for key, value in restored.entries(which).items():
            assert torch.equal(value, final_state.entries(which)[key]), (which, key)


def test_settings_are_in_the_fingerprint(model, cloud_folder, tmp_path):
    path = tmp_path / "predictions.jsonl"
    with dies_after(model, 1), pytest.raises(KeyboardInterrupt):
        adaptive_run(model, cloud_folder, path)
    header = read_jsonl(path)[0]["header"]
    assert header["fingerprint"]["test_time_cache"] == TestTimeCacheConfig().to_dict()
    content = path.read_bytes()
    for other in (False, {"positive_shot_capacity": 5}):
        with pytest.raises(ValueError, match="different run.*test_time_cache"):
            classify_files(model, cloud_folder, LABELS, batch_size=2, output_path=path, progress=False,
                           test_time_cache=other)  # fmt: skip
        assert path.read_bytes() == content
    state = tmp_path / "predictions.test_time_cache.safetensors"
    state.write_bytes(b"damaged")
    with pytest.raises(ValueError, match="not a usable test-time cache state"):
        adaptive_run(model, cloud_folder, path)
    adaptive_run(model, cloud_folder, path, resume=False)
    assert TestTimeCache.load(state)[0].num_seen == 9


def test_evaluate_records_the_cache_in_its_setup(model, tmp_path):
    dataset = make_dataset(8)
    report = evaluate(model, dataset, batch_size=3, output_dir=tmp_path, progress=False, test_time_cache=True)
    assert report.setup["test_time_cache"] == TestTimeCacheConfig().to_dict()
    assert (tmp_path / "predictions.test_time_cache.safetensors").exists()
    assert "test_time_cache" not in evaluate(model, dataset, batch_size=3, progress=False).setup


def test_cli_switch(tiny_clip_dir, cloud_folder, capsys):
    arguments = ["classify", str(cloud_folder), "--model", str(tiny_clip_dir), "--labels", ",".join(LABELS), "--json"]
    assert main(arguments) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*arguments, "--test-time-cache"]) == 0
    adapted = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in adapted] == [r["file"] for r in plain]
    assert [r["predictions"] for r in adapted] != [r["predictions"] for r in plain]


def test_demo_session_option(tiny_clip_dir, tmp_path):
    pytest.importorskip("gradio")
    from pointclip_hf.demo import AdaptiveSession, DemoModels, classify_file

    models = DemoModels(str(tiny_clip_dir))
    paths = []
    for index, cloud in enumerate(make_clouds(3, seed=6)):
        paths.append(str(tmp_path / f"{index}.npy"))
        np.save(paths[-1], cloud)
    labels = ", ".join(LABELS)
    plain = [classify_file(models, path, labels, "pointclip_v1").scores for path in paths]
    first, second = AdaptiveSession(), AdaptiveSession()
    adapted = [classify_file(models, path, labels, "pointclip_v1", session=first).scores for path in paths]
    assert [classify_file(models, path, labels, "pointclip_v1", session=second).scores for path in paths] == adapted
    assert adapted != plain and first.cache.num_seen == 3
    classify_file(models, paths[0], "cube, sphere", "pointclip_v1", session=first)
    assert first.cache.num_seen == 1  # other labels: a fresh cache
