"""`train_adapter`: few-shot training of the inter-view adapter, CLIP frozen (PointCLIP V1 few-shot recipe: the
official `trainers/fewshot.py` and `configs/trainers/PointCLIP_FS/*.yaml`).

The recipe, by default (see [`TrainingConfig`]):

- SGD (lr 0.01, momentum 0.9, weight decay 5e-4) on the adapter parameters; CLIP frozen and in eval mode; the adapter
  in fp32 even when CLIP is not.
- One constant warm-up epoch at 1e-5, then `CosineAnnealingLR(T_max=epochs)` from its first value, stepped once per
  epoch, exactly as Dassl's `ConstantWarmupScheduler` does it (`RecipeLRScheduler`, see `learning_rate_at`).
- DGCNN label smoothing 0.2 (the model's loss), batches of 32 with `drop_last` when there are at least 32 clouds.
- Per-cloud augmentation (`augment_point_clouds`): per-axis scale U(2/3, 3/2) then per-axis shift U(-0.2, 0.2).
- Model selection on the validation set after every `eval_every` epochs (the best adapter is kept, in memory and in
  `output_dir/best/`); without a validation set the last adapter is kept.

When augmentation is off (`augment=False`; `cache_features` then defaults to on) the CLIP view features are computed
once and the epochs cost only the adapter. Both paths give the same training up to float rounding: a matrix product's
rounding depends on a row's position in its batch, and the uncached path encodes each cloud in a different batch every
epoch.

With a cache head (`model.build_cache(...)`) its keys train too, the values fixed: Tip-Adapter-F through the same
loop (then search its `alpha` and `beta` again with `cache_building.search_cache_on_validation`).

Runs are seeded and resumable: after each epoch `output_dir/checkpoint/` holds the adapter, the optimiser state, the
RNG states and the history (see `checkpoints`), and `train_adapter(..., resume=True)` continues bit-exactly from it.

One run goes through named steps: `_set_up` (model, data, optimiser), `_seed_generators` and `_resume`, then per epoch
`_train_one_epoch`, `_validate_and_select` and `_save_epoch`, and finally `_finish`.
"""

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub.utils import tqdm

from ..argument_checks import check_counts
from ..atomic_files import write_file_atomically
from ..encoding import PreparedSplit, class_names_for, encode_split, prepare_split, view_features
from ..model.modeling_pointclip import PointCLIPModel
from ..model.pipeline_pointclip import label_embeddings
from ..model.processing_pointclip import PointCLIPFeatureExtractor, PointCLIPProcessor, processor_for_model
from ..model.weights_fingerprint import clip_weights_sha256, tensors_sha256
from .augmentation import augment_point_clouds
from .checkpoints import (
    ADAPTER_FILE,
    BEST_DIR,
    CHECKPOINT_DIR,
    RESULT_FILE,
    check_resume_compatible,
    existing_checkpoint,
    head_tensors,
    load_checkpoint,
    read_checkpoint_state,
    save_best,
    save_checkpoint,
)
from .config import TrainingConfig, TrainingResult
from .schedule import RecipeLRScheduler

logger = logging.getLogger(__name__)


@dataclass
class _TrainingRun:
    """The fixed inputs of one `train_adapter` call, gathered by `_set_up`."""

    model: PointCLIPModel
    heads: torch.nn.ModuleDict
    config: TrainingConfig
    label_names: list[str]
    device: torch.device
    processor: PointCLIPProcessor
    chunk: int
    train: PreparedSplit
    validation: PreparedSplit | None
    text_embeds: torch.Tensor
    optimizer: torch.optim.Optimizer
    fingerprint: dict
    output_dir: Path | None

    @property
    def feature_extractor(self) -> PointCLIPFeatureExtractor:
        return self.processor.feature_extractor


@dataclass
class _RunState:
    """What the epochs so far produced: their records and the adapter selected on the validation set."""

    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    best_epoch: int | None = None
    best_accuracy: float | None = None
    best_adapter: dict | None = None


def _check_arguments(model, stop_after_epoch: int | None) -> None:
    if not isinstance(model, PointCLIPModel):
        raise TypeError(f"train_adapter needs a PointCLIPModel, got {type(model).__name__}.")
    if not model.trainable_heads():
        raise ValueError(
            "This model has no head to train: no inter-view adapter (config.use_adapter is False) and no cache; build "
            "one with build_few_shot_model(...), PointCLIPConfig(use_adapter=True, ...) or model.build_cache(...)."
        )
    check_counts({"stop_after_epoch": stop_after_epoch}, optional=("stop_after_epoch",))


def _set_up(model, train_dataset, validation_dataset, config: TrainingConfig, output_dir) -> _TrainingRun:
    """Freeze CLIP, move the model, prepare both splits, embed the labels and build the optimiser."""
    model.config.label_names = label_names = class_names_for(model, train_dataset)
    device = torch.device(config.device) if config.device is not None else model.device
    model.to(device)
    model.clip.requires_grad_(False).eval()
    heads = model.trainable_heads().float().requires_grad_(True)
    model.config.label_smoothing = config.label_smoothing
    processor = processor_for_model(model)
    extractor = processor.feature_extractor
    chunk = max(config.batch_size, 1)

    train = prepare_split(train_dataset, "train", label_names, extractor, device, chunk, config.progress)
    if len(train.points) < 2:
        raise ValueError("The training set must hold at least 2 clouds (the adapter's BatchNorm needs a batch of 2).")
    validation = None
    if validation_dataset is not None:
        validation = prepare_split(
            validation_dataset, "validation", label_names, extractor, device, chunk, config.progress
        )
    text_embeds = label_embeddings(model, processor, label_names).to(device)

    optimizer = torch.optim.SGD(
        list(heads.parameters()),
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    fingerprint = {
        "label_names": label_names,
        "num_train": len(train.points),
        "num_validation": None if validation is None else len(validation.points),
        "adapter_shapes": _shapes(model.adapter),
        "projection_style": model.config.projection_style,
        "processor": extractor.to_dict(),
        "clip_weights_sha256": clip_weights_sha256(model),
        "train_sha256": _split_sha256(train),
        "validation_sha256": _split_sha256(validation),
    }
    if model.cache is not None:
        fingerprint["cache_shapes"] = _shapes(model.cache)
    output_dir = Path(output_dir) if output_dir is not None else None
    return _TrainingRun(
        model,
        heads,
        config,
        label_names,
        device,
        processor,
        chunk,
        train,
        validation,
        text_embeds,
        optimizer,
        fingerprint,
        output_dir,
    )


def _shapes(head: torch.nn.Module | None) -> dict | None:
    return None if head is None else {key: list(value.shape) for key, value in head.state_dict().items()}


def _split_sha256(split: PreparedSplit | None) -> str | None:
    """The content hash of a prepared split's clouds and labels: another dataset of the same size is told apart."""
    return None if split is None else tensors_sha256({"points": split.points, "labels": split.labels})


def _seed_generators(config: TrainingConfig, device: torch.device) -> torch.Generator:
    """Seed the global CPU (and CUDA) RNG, which drive dropout; return the generator of shuffling and augmentation."""
    generator = torch.Generator().manual_seed(config.seed)
    torch.random.default_generator.manual_seed(config.seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(config.seed)
    return generator


def _resume(run: _TrainingRun, generator: torch.Generator) -> _RunState:
    """The state of `output_dir/checkpoint/` (model, optimiser and RNGs restored), or a fresh one without it."""
    existing = existing_checkpoint(run.output_dir / CHECKPOINT_DIR)
    if existing is None:
        return _RunState()
    state = read_checkpoint_state(existing)
    check_resume_compatible(state, run.config, run.fingerprint, existing)
    best_adapter = load_checkpoint(existing, state, run.model, run.optimizer, generator, run.device)
    logger.info("Resuming from %s after epoch %d.", existing, state["epoch"])
    return _RunState(
        history=state["history"],
        start_epoch=state["epoch"],
        best_epoch=state["best_epoch"],
        best_accuracy=state["best_validation_accuracy"],
        best_adapter=best_adapter,
    )


def _cache_view_features(run: _TrainingRun, start_epoch: int) -> None:
    """Encode the validation clouds (never augmented) and, with the feature cache on, the training clouds, once."""
    if start_epoch >= run.config.epochs:
        return
    if run.config.use_feature_cache:
        run.train.features = encode_split(run.model, run.feature_extractor, run.train, run.chunk, run.config.progress)
    if run.validation is not None:
        run.validation.features = encode_split(
            run.model, run.feature_extractor, run.validation, run.chunk, run.config.progress
        )


def _training_step(run: _TrainingRun, index: torch.Tensor, generator: torch.Generator) -> tuple[float, int]:
    """One SGD step on the clouds `index`; returns the batch's mean loss and its number of correct predictions."""
    config, train = run.config, run.train
    if train.features is not None:
        features = train.features[index]
    else:
        points = train.points[index]
        if config.augment:
            points = augment_point_clouds(points, generator, config.scale_range, config.shift_range)
        features = view_features(run.model, run.feature_extractor, points)
    labels = train.labels[index]
    output = run.model(view_features=features, text_embeds=run.text_embeds, labels=labels)
    loss = float(output.loss.detach())
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"The training loss is {loss}: the heads diverged. Lower the learning rate (or, for a cache, train at a "
            "smaller config.cache_alpha and cache_beta, as Tip-Adapter-F trains at its initial values)."
        )
    run.optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    run.optimizer.step()
    return loss, int((output.logits.detach().argmax(-1) == labels).sum())


def _train_one_epoch(run: _TrainingRun, epoch: int, generator: torch.Generator, scheduler: RecipeLRScheduler
                     ) -> dict:  # fmt: skip
    """Go once through the shuffled training set at the epoch's learning rate, then step the schedule; returns the
    epoch's record."""
    config = run.config
    lr = scheduler.get_last_lr()[0]
    run.heads.train()
    num_train = len(run.train.points)
    num_batches = num_train // config.batch_size if num_train >= config.batch_size else 1
    order = torch.randperm(num_train, generator=generator).to(run.device)
    loss_sum, correct, seen = 0.0, 0, 0
    for step in tqdm(range(num_batches), desc=f"Epoch {epoch + 1}", disable=not config.progress, leave=False):
        index = order[step * config.batch_size : (step + 1) * config.batch_size]
        loss, batch_correct = _training_step(run, index, generator)
        loss_sum += loss * len(index)
        correct += batch_correct
        seen += len(index)
    scheduler.step()
    return {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / seen, "train_accuracy": correct / seen}


@torch.no_grad()
def _evaluate(model, features: torch.Tensor, labels: torch.Tensor, text_embeds: torch.Tensor, chunk: int = 256):
    """Mean loss and accuracy of the heads (in eval mode) on cached `features` `(N, views, C)`."""
    model.trainable_heads().eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(features), chunk):
        output = model(
            view_features=features[start : start + chunk],
            text_embeds=text_embeds,
            labels=labels[start : start + chunk],
        )
        count = len(labels[start : start + chunk])
        loss_sum += float(output.loss) * count
        correct += int((output.logits.argmax(-1) == labels[start : start + chunk]).sum())
    return loss_sum / len(features), correct / len(features)


def _validate_and_select(run: _TrainingRun, state: _RunState, record: dict) -> bool:
    """On evaluation epochs, add the validation figures to `record` and keep the adapter if it is the best so far
    (the earliest wins ties). Returns whether the selection changed."""
    epoch = record["epoch"]
    if run.validation is None or (epoch % run.config.eval_every != 0 and epoch != run.config.epochs):
        return False
    record["validation_loss"], record["validation_accuracy"] = _evaluate(
        run.model, run.validation.features, run.validation.labels, run.text_embeds
    )
    if state.best_accuracy is not None and not record["validation_accuracy"] > state.best_accuracy:
        return False
    state.best_epoch, state.best_accuracy = epoch, record["validation_accuracy"]
    state.best_adapter = head_tensors(run.heads)
    return True


def _save_epoch(run: _TrainingRun, state: _RunState, record: dict, improved: bool, generator: torch.Generator):
    """Rewrite `best/` when the selection changed, and the checkpoint after every epoch."""
    if run.output_dir is None:
        return
    if improved:
        save_best(run.output_dir / BEST_DIR, run.model, run.processor)
    checkpoint_state = {
        "epoch": record["epoch"],
        "history": state.history,
        "best_epoch": state.best_epoch,
        "best_validation_accuracy": state.best_accuracy,
        "training_config": run.config.to_dict(),
        "fingerprint": run.fingerprint,
        "scheduler": {"type": "constant_warmup_cosine", "last_epoch": record["epoch"], "last_lr": record["lr"]},
    }
    save_checkpoint(
        run.output_dir / CHECKPOINT_DIR,
        run.model,
        run.optimizer,
        generator,
        run.device,
        checkpoint_state,
        state.best_adapter,
    )


def _run_epochs(run: _TrainingRun, state: _RunState, generator: torch.Generator, stop_after_epoch: int | None):
    config = run.config
    last_epoch = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
    epochs_bar = tqdm(
        range(state.start_epoch, last_epoch),
        desc="Training adapter",
        disable=not config.progress,
        initial=state.start_epoch,
        total=config.epochs,
    )
    scheduler = RecipeLRScheduler(run.optimizer, config, first_epoch=state.start_epoch)
    for epoch in epochs_bar:
        started = time.perf_counter()
        record = _train_one_epoch(run, epoch, generator, scheduler)
        improved = _validate_and_select(run, state, record)
        record["seconds"] = time.perf_counter() - started
        state.history.append(record)
        epochs_bar.set_postfix(
            {k: f"{v:.4g}" for k, v in record.items() if k in ("lr", "train_loss", "validation_accuracy")}
        )
        _save_epoch(run, state, record, improved, generator)


def _finish(run: _TrainingRun, state: _RunState) -> TrainingResult:
    """Load the selected adapter (the last one without a validation set) and write `best/` and the result file."""
    epochs_completed = len(state.history)
    finished = epochs_completed >= run.config.epochs
    best_epoch = state.best_epoch
    if run.validation is None:
        best_epoch = epochs_completed
    elif state.best_adapter is not None:
        run.heads.load_state_dict({k: v.to(run.device) for k, v in state.best_adapter.items()})
    run.model.eval()
    output_dir = run.output_dir
    result = TrainingResult(
        best_epoch=best_epoch,
        best_validation_accuracy=state.best_accuracy,
        history=state.history,
        output_dir=None if output_dir is None else str(output_dir),
        epochs_completed=epochs_completed,
        finished=finished,
    )
    if output_dir is not None and finished:
        if run.validation is None or not (output_dir / BEST_DIR / ADAPTER_FILE).exists():
            save_best(output_dir / BEST_DIR, run.model, run.processor)
        payload = dict(result.to_dict(), training_config=run.config.to_dict(), label_names=run.label_names)
        write_file_atomically(output_dir / RESULT_FILE, json.dumps(payload, indent=2).encode("utf-8"))
    return result


def train_adapter(
    model: PointCLIPModel,
    train_dataset,
    validation_dataset=None,
    config: TrainingConfig | None = None,
    output_dir: str | os.PathLike | None = None,
    resume: bool = True,
    stop_after_epoch: int | None = None,
) -> TrainingResult:
    """
    Train `model`'s heads on `train_dataset`, CLIP frozen: the inter-view adapter and the cache keys (Tip-Adapter-F),
    those the model has.

    Args:
        model ([`PointCLIPModel`]):
            A model with an adapter (see `build_few_shot_model`) or a cache (see `build_cache`); its
            `config.label_names` give the classes (taken from the dataset's `ClassLabel` names when unset). Rendering
            uses `processor_for_model(model)`.
        train_dataset (`datasets.Dataset`):
            Columns `points` (`(num_points_i, 3)` each) and integer `label` in `[0, len(label_names))`.
        validation_dataset (`datasets.Dataset`, *optional*):
            Used for model selection only (evaluated every `config.eval_every` epochs; the adapter with the best
            accuracy is kept, the earliest on ties). Never pass the test set here. Without one, the last adapter is
            kept.
        config ([`TrainingConfig`], *optional*):
            The recipe (PointCLIP's by default).
        output_dir (`str` or `os.PathLike`, *optional*):
            If given, `checkpoint/` is rewritten atomically after every epoch, `best/` (loadable with
            `PointCLIPModel.from_pretrained`, processor included) whenever the selected adapter changes, and
            `training_result.json` at the end.
        resume (`bool`, *optional*, defaults to `True`):
            Continue from `output_dir/checkpoint/` when it exists (the result is identical to an uninterrupted
            run); `False` starts over.
        stop_after_epoch (`int`, *optional*):
            Stop once this many epochs are completed, as an interruption would (the checkpoint allows resuming);
            the model then holds the best adapter so far.

    Returns:
        [`TrainingResult`]. The model ends in eval mode holding the selected adapter.
    """
    config = config or TrainingConfig()
    _check_arguments(model, stop_after_epoch)
    run = _set_up(model, train_dataset, validation_dataset, config, output_dir)
    cuda_devices = [run.device] if run.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        generator = _seed_generators(config, run.device)
        state = _resume(run, generator) if resume and run.output_dir is not None else _RunState()
        _cache_view_features(run, state.start_epoch)
        _run_epochs(run, state, generator, stop_after_epoch)
    return _finish(run, state)


__all__ = ["train_adapter"]
