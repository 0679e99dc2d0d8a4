"""CPU work runs on single-threaded workers: results do not depend on the thread count, and forked children work."""

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch
from test_batch_invariance import LABELS, build_model, build_wide_clip

from pointclip_hf.cli import main
from pointclip_hf.model.cpu_threads import map_on_cpu_threads, run_on_cpu_thread
from pointclip_hf.model.pipeline_pointclip import _LABEL_EMBEDDINGS, label_embeddings
from pointclip_hf.model.processing_pointclip import processor_for_model


@pytest.fixture
def threads():
    """Set torch's thread count for one test; restored after."""
    saved = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(saved)


def test_workers_are_single_threaded_and_leave_the_callers_count(threads):
    threads(2)
    assert map_on_cpu_threads(lambda _: torch.get_num_threads(), range(4)) == [1] * 4
    assert torch.get_num_threads() == 2
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert seen == [2], "a thread started after the workers keeps torch's thread count"


def test_switching_thread_counts_reuses_the_workers(threads):
    def workers(count: int) -> set[threading.Thread]:
        threads(count)
        return set(map_on_cpu_threads(lambda _: threading.current_thread(), range(8)))

    single = workers(1)
    assert len(single) == 1 and len(workers(2)) <= 2 and not single & workers(2)
    assert workers(1) == single, "the one worker of 1 thread outlives a switch to 2 threads and back"


def test_tasks_go_to_the_workers_in_turn_from_the_first(threads):
    threads(2)
    names = [map_on_cpu_threads(lambda _: threading.current_thread().name, range(3)) for _ in range(10)]
    assert names == [["pointclip-cpu-0", "pointclip-cpu-1", "pointclip-cpu-0"]] * 10, "a lone task finds warm caches"


def test_workers_keep_the_callers_grad_mode_and_raise_its_errors():
    weight = torch.ones(3, requires_grad=True)
    assert run_on_cpu_thread(lambda: (weight * 2).requires_grad)
    with torch.no_grad():
        assert not run_on_cpu_thread(lambda: (weight * 2).requires_grad)
    with torch.inference_mode():
        assert run_on_cpu_thread(torch.is_inference_mode_enabled)
    with pytest.raises(ValueError, match="cloud 3"):
        map_on_cpu_threads(lambda i: (_ for _ in ()).throw(ValueError(f"cloud {i}")) if i == 3 else i, range(5))


def test_nested_work_runs_inline():
    def names():
        return threading.current_thread().name, map_on_cpu_threads(lambda _: threading.current_thread().name, range(3))

    outer, inner = run_on_cpu_thread(names)
    assert outer.startswith("pointclip-cpu") and inner == [outer] * 3


@pytest.fixture
def wide_model():
    return build_model(build_wide_clip(), "pointclip_v1_fewshot", use_adapter=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("count", [2, 3])
def test_scores_and_label_embeddings_do_not_depend_on_the_thread_count(wide_model, threads, count, dtype):
    wide_model = wide_model.to(dtype)
    rng = np.random.default_rng(5)
    clouds = [rng.normal(size=(400, 3)).astype(np.float32) for _ in range(3)]
    processor = processor_for_model(wide_model)
    threads(1)
    _LABEL_EMBEDDINGS.pop(wide_model, None)
    expected_text = label_embeddings(wide_model, processor, LABELS)
    expected = wide_model.classify(clouds, LABELS, batch_size=3)
    threads(count)
    _LABEL_EMBEDDINGS.pop(wide_model, None)
    assert torch.equal(label_embeddings(wide_model, processor, LABELS), expected_text)
    assert wide_model.classify(clouds, LABELS, batch_size=3) == expected


def test_label_embedding_does_not_depend_on_many_other_labels(wide_model):
    """40 labels with 3 templates fill several text-tower calls: a label lands in another call and row."""
    processor = processor_for_model(wide_model)
    templates = ["a {}.", "a depth map of a {}.", "a photo of the big {}."]
    alone = label_embeddings(wide_model, processor, ["cube"], templates)[0]
    many = [f"shape number {index}" for index in range(39)] + ["cube"]
    for labels in (many, many[::-1], many[::3]):
        embeds = label_embeddings(wide_model, processor, labels, templates)
        assert torch.equal(embeds[labels.index("cube")], alone)


def test_evaluation_bytes_are_equal_at_one_and_two_threads(tiny_clip_dir, class_folder, tmp_path, threads):
    outputs = []
    for count in (1, 2):
        output = tmp_path / f"predictions-{count}.jsonl"
        argv = ["--threads", str(count), "-q", "classify", str(class_folder), "--labels", "box,chair", "--model",
                str(tiny_clip_dir), "--output", str(output), "--batch-size", "3", "--json"]  # fmt: skip
        assert main(argv) == 0
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]


def test_datasets_map_with_two_processes_after_torch_ran(tmp_path):
    """`Dataset.map(..., num_proc=2)` forks a parent whose OpenMP threads already ran: the children must not hang."""
    script = textwrap.dedent(
        """
        import numpy as np, torch, datasets
        from pointclip_hf import PointCLIPFeatureExtractor
        torch.set_num_threads(2)
        a = torch.randn(1000, 1000); (a @ a).sum()
        processor = PointCLIPFeatureExtractor("pointclip_v1", num_points=128, image_size=32)
        rng = np.random.default_rng(0)
        ds = datasets.Dataset.from_dict({"points": [rng.normal(size=(200, 3)).astype(np.float32) for _ in range(6)]})
        fn = lambda batch: {"pixel_values": processor(batch["points"], return_tensors="np")["pixel_values"]}
        out = ds.map(fn, batched=True, batch_size=2, num_proc=2, cache_file_name=CACHE_FILE)
        print(np.asarray(out["pixel_values"]).shape)
        """
    ).replace("CACHE_FILE", repr(str(tmp_path / "mapped.arrow")))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(6, 6, 3, 32, 32)"
