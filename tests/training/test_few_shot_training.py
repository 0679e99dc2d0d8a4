"""Few-shot adapter training: recipe, determinism, cached-feature path, resumable checkpoints, errors."""

import copy
import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import SHAPE_CLASSES, build_tiny_tokenizer, make_shape_dataset
from datasets import Array2D, ClassLabel, Dataset, Features, Value
from safetensors.torch import load_file

from pointclip_hf import PointCLIPFeatureExtractor, PointCLIPModel, PointCLIPProcessor
from pointclip_hf.model.modeling_pointclip import smooth_cross_entropy
from pointclip_hf.training import (
    TrainingConfig,
    augment_point_clouds,
    build_few_shot_model,
    learning_rate_schedule,
    train_adapter,
)

CLASSES = SHAPE_CLASSES
STYLE = "pointclip_v1_fewshot"
NUM_POINTS = 256


def make_dataset(seed: int, per_class: int) -> Dataset:
    return make_shape_dataset(seed, per_class, NUM_POINTS)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """The tensors here are tiny: intra-op threads only add synchronisation (ruinous on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def train_set():
    return make_dataset(0, per_class=12)


@pytest.fixture(scope="module")
def validation_set():
    return make_dataset(1, per_class=6)


@pytest.fixture(scope="module")
def small_train_set():
    return make_dataset(2, per_class=2)


@pytest.fixture(scope="module")
def small_validation_set():
    return make_dataset(3, per_class=2)


def make_model(clip_dir, seed=0, **kwargs):
    model = build_few_shot_model(clip_dir, CLASSES, seed=seed, **kwargs)
    feature_extractor = PointCLIPFeatureExtractor(projection_style=STYLE, num_points=NUM_POINTS, image_size=32)
    model.processor = PointCLIPProcessor(feature_extractor, build_tiny_tokenizer())
    return model


def adapter_state(model):
    return {key: value.detach().clone() for key, value in model.adapter.state_dict().items()}


def assert_same_state(first, second):
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def without_timing(history):
    return [{key: value for key, value in record.items() if key != "seconds"} for record in history]


def fast(**kwargs):
    return TrainingConfig(progress=False, **kwargs)


# ------------------------------------------------------------------------------------------------ recipe


class DasslConstantWarmup(torch.optim.lr_scheduler.LRScheduler):
    """Dassl's ConstantWarmupScheduler (PointCLIP's Dassl3D), verbatim in behaviour."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr):
        self.successor, self.warmup_epoch, self.cons_lr = successor, warmup_epoch, cons_lr
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]

    def step(self, epoch=None):
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)


def reference_lrs(epochs, lr=0.01, warmup_epochs=1, warmup_lr=1e-5):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(epochs))
    scheduler = DasslConstantWarmup(optimizer, cosine, warmup_epochs, warmup_lr)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    return lrs


@pytest.mark.parametrize("epochs", [5, 250])
def test_learning_rate_schedule_matches_dassl(epochs):
    ours = learning_rate_schedule(TrainingConfig(epochs=epochs))
    assert ours == pytest.approx(reference_lrs(epochs), rel=1e-12, abs=0)
    assert ours[0] == 1e-5 and ours[1] == 0.01
    assert ours[-1] == pytest.approx(0.01 * (1 + math.cos(math.pi * (epochs - 2) / epochs)) / 2)


@pytest.mark.parametrize("first_epoch", [0, 3])
def test_recipe_scheduler_sets_the_schedule_bit_for_bit(first_epoch):
    from pointclip_hf.training.schedule import RecipeLRScheduler

    config = TrainingConfig(epochs=8)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.learning_rate)
    scheduler = RecipeLRScheduler(optimizer, config, first_epoch=first_epoch)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stepped in the right order: no warning from torch
        for _ in range(first_epoch, config.epochs):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    assert seen == learning_rate_schedule(config)[first_epoch:]


@pytest.mark.parametrize("num_classes", [2, 4, 40])
def test_smooth_cross_entropy_is_dgcnn_label_smoothing(num_classes):
    generator = torch.Generator().manual_seed(num_classes)
    logits = torch.randn(8, num_classes, generator=generator, dtype=torch.float64) * 5
    labels = torch.randint(0, num_classes, (8,), generator=generator)
    smoothing = 0.2
    target = torch.full_like(logits, smoothing / (num_classes - 1))  # the reference's DGCNN formula, written out
    target.scatter_(1, labels[:, None], 1 - smoothing)
    reference = -(target * logits.log_softmax(-1)).sum(-1).mean()
    assert abs(float(smooth_cross_entropy(logits, labels, smoothing) - reference)) < 1e-12
    with pytest.raises(ValueError, match="at most 0.5"):
        smooth_cross_entropy(logits[:, :2], labels.clamp(max=1), 0.6)
    with pytest.raises(ValueError, match="Labels must lie in"):
        smooth_cross_entropy(logits, labels + num_classes, smoothing)


def test_training_config_json_round_trip():
    config = TrainingConfig(epochs=3, augment=False, device="cpu", scale_range=(0.5, 2.0))
    again = TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.scale_range == (0.5, 2.0)
    assert config.use_feature_cache and not TrainingConfig().use_feature_cache
    with pytest.raises(ValueError, match="Unknown TrainingConfig"):
        TrainingConfig.from_dict({"epochs": 2, "lr": 0.1})


def test_augmentation_scales_then_shifts_per_cloud():
    points = torch.ones(64, 5, 3)
    augmented = augment_point_clouds(points, torch.Generator().manual_seed(0))
    again = augment_point_clouds(points, torch.Generator().manual_seed(0))
    assert torch.equal(augmented, again)
    generator = torch.Generator().manual_seed(0)
    scale = torch.empty(64, 1, 3).uniform_(2 / 3, 3 / 2, generator=generator)
    shift = torch.empty(64, 1, 3).uniform_(-0.2, 0.2, generator=generator)
    torch.testing.assert_close(augmented, points * scale + shift, rtol=0, atol=0)
    assert torch.equal(augmented, augmented[:, :1].expand_as(augmented))  # one transform per cloud
    assert augmented.min() >= 2 / 3 - 0.2 and augmented.max() <= 3 / 2 + 0.2


# ------------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def trained(tiny_clip_dir, train_set, validation_set, tmp_path_factory):
    """The reference recipe on cached features (augment off), 30 epochs, with checkpoints."""
    model = make_model(tiny_clip_dir)
    clip_before = {key: value.clone() for key, value in model.clip.state_dict().items()}
    adapter_before = adapter_state(model)
    output_dir = tmp_path_factory.mktemp("run")
    config = fast(epochs=30, batch_size=16, augment=False)
    result = train_adapter(model, train_set, validation_set, config, output_dir=output_dir)
    return model, result, config, output_dir, clip_before, adapter_before


def test_training_learns_and_only_touches_the_adapter(trained):
    model, result, config, _, clip_before, adapter_before = trained
    last = result.history[-1]
    print(
        f"\ntrain accuracy {last['train_accuracy']:.3f}, best validation accuracy "
        f"{result.best_validation_accuracy:.3f} (epoch {result.best_epoch}), chance {1 / len(CLASSES):.2f}"
    )
    assert last["train_accuracy"] >= 0.75
    assert result.best_validation_accuracy >= 0.5
    assert result.finished and result.epochs_completed == 30 and len(result.history) == 30
    for key, value in model.clip.state_dict().items():
        assert torch.equal(value, clip_before[key]), key
    assert not torch.equal(model.adapter.global_proj.weight, adapter_before["global_proj.weight"])
    assert all(not p.requires_grad for p in model.clip.parameters())
    assert model.adapter.view_fusion_weights.dtype == torch.float32
    assert not model.training and not model.adapter.training
    assert model.config.label_smoothing == config.label_smoothing
    assert [record["lr"] for record in result.history] == learning_rate_schedule(config)


def test_model_holds_best_validation_adapter(trained, validation_set):
    model, result, *_ = trained
    accuracies = [record["validation_accuracy"] for record in result.history]
    assert result.best_epoch == 1 + accuracies.index(max(accuracies))  # earliest best
    predictions = model.classify(validation_set.with_format("numpy")[:]["points"], CLASSES, top_k=1)
    accuracy = np.mean([p[0]["label"] == CLASSES[y] for p, y in zip(predictions, validation_set["label"])])
    assert accuracy == pytest.approx(result.best_validation_accuracy)
    last = load_file(trained[3] / "checkpoint" / "model.safetensors")  # the adapter after the final epoch
    same_as_last = all(torch.equal(last[f"adapter.{k}"], v) for k, v in adapter_state(model).items())
    assert same_as_last == (result.best_epoch == result.epochs_completed)


def test_bfloat16_keeps_the_top_label_of_float32(trained, validation_set):
    """What `--dtype auto` trades on a CPU with native bfloat16: scores move a little, so only near-ties can change
    their winner. Checked with a model that has learnt to tell the validation shapes apart (a random CLIP's scores are
    all near-ties); this 32-wide CLIP moves scores by up to about 0.12 in bfloat16 (native AVX512-BF16 kernels round
    otherwise than emulated ones), ViT-B by about 0.03."""
    model = copy.deepcopy(trained[0])
    clouds = validation_set.with_format("numpy")[:]["points"]
    exact = model.classify(clouds, CLASSES, batch_size=8)
    model.clip.to(torch.bfloat16)
    fast = model.classify(clouds, CLASSES, batch_size=8)
    score_changes = [abs(a["score"] - {b["label"]: b["score"] for b in y}[a["label"]]) for x, y in zip(exact, fast)
                     for a in x]  # fmt: skip
    assert max(score_changes) < 0.15
    clear = [(x[0]["label"], y[0]["label"]) for x, y in zip(exact, fast) if x[0]["score"] - x[1]["score"] > 0.24]
    assert len(clear) >= len(exact) // 2 and all(a == b for a, b in clear)


def test_best_directory_reloads(trained):
    model, result, _, output_dir, *_ = trained
    reloaded = PointCLIPModel.from_pretrained(output_dir / "best")
    assert_same_state(adapter_state(reloaded), adapter_state(model))
    assert reloaded.config.label_names == CLASSES
    assert PointCLIPProcessor.from_pretrained(output_dir / "best").feature_extractor.num_points == NUM_POINTS
    saved = json.loads((output_dir / "training_result.json").read_text())
    assert saved["best_epoch"] == result.best_epoch and saved["training_config"]["epochs"] == 30


def test_checkpoint_holds_only_safetensors_and_json(trained):
    model, result, config, output_dir, *_ = trained
    checkpoint = output_dir / "checkpoint"
    names = sorted(path.name for path in checkpoint.iterdir())
    assert names == ["best_model.safetensors", "model.safetensors", "optimizer.safetensors", "trainer_state.json"]
    for path in checkpoint.glob("*.safetensors"):
        assert path.read_bytes()[:2] != b"PK"  # not a torch.save zip
    assert not [p for p in output_dir.iterdir() if p.name.startswith(".") or p.name.endswith(".old")]
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["epoch"] == 30 and state["best_epoch"] == result.best_epoch
    assert without_timing(state["history"]) == without_timing(result.history)
    tensors = load_file(checkpoint / "optimizer.safetensors")
    num_parameters = len(list(model.adapter.parameters()))
    assert {f"momentum_buffer.{i}" for i in range(num_parameters)} <= set(tensors)
    assert tensors["rng.generator"].dtype == torch.uint8
    assert state["optimizer"]["param_groups"][0]["momentum"] == config.momentum
    best = load_file(checkpoint / "best_model.safetensors")
    assert_same_state({k.removeprefix("adapter."): v for k, v in best.items()}, adapter_state(model))


def test_cached_and_uncached_features_give_identical_weights(tiny_clip_dir, small_train_set):
    """Same seed, augmentation off: encoding the clouds once or at every step gives bitwise the same training, since a
    cloud's features do not depend on the batch it is encoded in."""
    states, histories = [], []
    for cache in (True, False):
        model = make_model(tiny_clip_dir)
        config = fast(epochs=3, batch_size=4, augment=False, cache_features=cache)
        result = train_adapter(model, small_train_set, None, config)  # no validation: both keep their last adapter
        states.append(adapter_state(model))
        histories.append(result.history)
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    without_time = [[{k: v for k, v in epoch.items() if k != "seconds"} for epoch in history] for history in histories]
    assert without_time[0] == without_time[1]


@pytest.fixture(scope="module")
def augmented_run(tiny_clip_dir, small_train_set, small_validation_set, tmp_path_factory):
    """4 augmented epochs (rendered every step), uninterrupted."""
    model = make_model(tiny_clip_dir)
    config = fast(epochs=4, batch_size=4)
    output_dir = tmp_path_factory.mktemp("straight")
    result = train_adapter(model, small_train_set, small_validation_set, config, output_dir=output_dir)
    return adapter_state(model), result, config, output_dir


def assert_same_checkpoint(first, second):
    """The last epoch's adapter and optimiser state (momentum buffers, RNG states) are bitwise equal."""
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert_same_state(load_file(first / "checkpoint" / name), load_file(second / "checkpoint" / name))


def test_same_seed_same_weights(tiny_clip_dir, small_train_set, small_validation_set, augmented_run):
    state, result, config, straight_dir = augmented_run
    model = make_model(tiny_clip_dir)
    again = train_adapter(model, small_train_set, small_validation_set, config)
    assert_same_state(adapter_state(model), state)
    assert without_timing(again.history) == without_timing(result.history)
    print(f"\naugmented run: best epoch {result.best_epoch}, history {without_timing(result.history)}")
    other = make_model(tiny_clip_dir)
    train_adapter(other, small_train_set, small_validation_set, fast(epochs=1, batch_size=4, seed=3))
    assert not torch.equal(adapter_state(other)["global_proj.weight"], state["global_proj.weight"])


def test_resume_after_stop_matches_uninterrupted_run(
    tiny_clip_dir, small_train_set, small_validation_set, augmented_run, tmp_path
):
    state, result, config, straight_dir = augmented_run
    model = make_model(tiny_clip_dir)
    first = train_adapter(model, small_train_set, small_validation_set, config, output_dir=tmp_path, stop_after_epoch=2)
    assert not first.finished and first.epochs_completed == 2
    assert json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())["epoch"] == 2
    model = make_model(tiny_clip_dir, seed=123)  # a different start: everything must come from the checkpoint
    resumed = train_adapter(model, small_train_set, small_validation_set, config, output_dir=tmp_path)
    assert resumed.finished and resumed.best_epoch == result.best_epoch
    assert without_timing(resumed.history) == without_timing(result.history)
    assert_same_state(adapter_state(model), state)
    assert_same_checkpoint(tmp_path, straight_dir)
    model = make_model(tiny_clip_dir, seed=5)  # a finished run: nothing left to train, the selected adapter is loaded
    again = train_adapter(model, small_train_set, small_validation_set, config, output_dir=tmp_path)
    assert again.finished and without_timing(again.history) == without_timing(result.history)
    assert_same_state(adapter_state(model), state)


def test_crash_mid_epoch_loses_nothing_checkpointed(
    tiny_clip_dir, small_train_set, small_validation_set, augmented_run, tmp_path
):
    state, result, config, straight_dir = augmented_run
    model = make_model(tiny_clip_dir)
    forward, calls = model.adapter.forward, []

    def crashing_forward(*args, **kwargs):
        if model.adapter.training:
            calls.append(1)
            if len(calls) == 2 * 2 + 1:  # 2 training steps per epoch: crash in epoch 3's first step
                raise KeyboardInterrupt
        return forward(*args, **kwargs)

    model.adapter.forward = crashing_forward
    with pytest.raises(KeyboardInterrupt):
        train_adapter(model, small_train_set, small_validation_set, config, output_dir=tmp_path)
    assert json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())["epoch"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    model = make_model(tiny_clip_dir, seed=7)
    train_adapter(model, small_train_set, small_validation_set, config, output_dir=tmp_path)
    assert_same_state(adapter_state(model), state)
    assert_same_checkpoint(tmp_path, straight_dir)


def test_resume_refuses_changed_settings(tiny_clip_dir, small_train_set, tmp_path):
    config = fast(epochs=2, batch_size=4, augment=False)
    train_adapter(make_model(tiny_clip_dir), small_train_set, None, config, output_dir=tmp_path, stop_after_epoch=1)
    with pytest.raises(ValueError, match="settings changed"):
        train_adapter(
            make_model(tiny_clip_dir),
            small_train_set,
            None,
            fast(epochs=3, batch_size=4, augment=False),
            output_dir=tmp_path,
        )
    model = make_model(tiny_clip_dir)
    result = train_adapter(model, small_train_set, None, config, output_dir=tmp_path, resume=False)
    assert result.finished and result.best_epoch == 2 and result.best_validation_accuracy is None
    assert (tmp_path / "best" / "model.safetensors").exists()


def test_bf16_clip_keeps_fp32_adapter(tiny_clip_dir, small_train_set):
    model = make_model(tiny_clip_dir, dtype=torch.bfloat16)
    assert model.clip.dtype == torch.bfloat16 and model.adapter.global_proj.weight.dtype == torch.float32
    config = TrainingConfig(epochs=1, batch_size=4, augment=False, progress=True)  # progress bars on, once
    result = train_adapter(model, small_train_set, None, config)
    assert math.isfinite(result.history[0]["train_loss"])
    assert model.adapter.global_proj.weight.dtype == torch.float32


# ------------------------------------------------------------------------------------------------ errors


def test_clear_errors(tiny_clip_dir, zero_shot_model, small_train_set):
    model = make_model(tiny_clip_dir)
    config = fast(epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="no inter-view adapter"):
        train_adapter(zero_shot_model, small_train_set, config=config)
    with pytest.raises(ValueError, match="empty"):
        train_adapter(model, small_train_set.select([]), config=config)
    with pytest.raises(ValueError, match="lacks the column"):
        train_adapter(model, small_train_set.rename_column("points", "xyz"), config=config)
    bad_labels = Dataset.from_dict(
        {"points": [np.zeros((4, 3), np.float32)] * 2, "label": [0, 7]},
        features=Features({"points": Array2D((None, 3), "float32"), "label": Value("int64")}),
    )
    with pytest.raises(ValueError, match=r"label ids \[7\] outside \[0, 4\)"):
        train_adapter(model, bad_labels, config=config)
    with pytest.raises(ValueError, match="validation dataset is empty"):
        train_adapter(model, small_train_set, small_train_set.select([]), config=config)
    with pytest.raises(TypeError, match="datasets.Dataset"):
        train_adapter(model, [[0.0, 0.0, 0.0]], config=config)
    renamed = small_train_set.cast_column("label", ClassLabel(names=["a", "b", "c", "d"]))
    with pytest.raises(ValueError, match="trained on the labels"):
        train_adapter(model, renamed, config=fast(epochs=1, batch_size=4, augment=False))
    with pytest.raises(ValueError, match="stop_after_epoch"):
        train_adapter(model, small_train_set, config=config, stop_after_epoch=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        TrainingConfig(batch_size=0)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        TrainingConfig(epochs=0)
    with pytest.raises(ValueError, match="cannot be combined"):
        TrainingConfig(augment=True, cache_features=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = -1  # checked once, when made: settings cannot change afterwards
    with pytest.raises(ValueError, match="batch_size"):
        dataclasses.replace(config, batch_size=-1)
    assert "num_workers" not in TrainingConfig().to_dict()
    assert TrainingConfig.from_dict({**TrainingConfig().to_dict(), "num_workers": 4}) == TrainingConfig()
    with pytest.raises(ValueError, match="duplicates"):
        build_few_shot_model(tiny_clip_dir, ["a", "a"])


def test_dataset_classes_in_another_order_are_remapped(small_train_set):
    from pointclip_hf.encoding import check_labelled_dataset

    names = small_train_set.features["label"].names
    shuffled = small_train_set.cast_column("label", ClassLabel(names=names[::-1]))
    ids = check_labelled_dataset(shuffled, "train", names)
    assert ids.tolist() == [len(names) - 1 - i for i in small_train_set["label"]]
