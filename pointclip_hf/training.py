"""Few-shot training of the inter-view adapter (PointCLIP V1 few-shot recipe, spec 3.3).

`build_few_shot_model(clip, label_names)` makes a PointCLIP with a fresh adapter;
`train_adapter(model, train, validation)` trains only that adapter, with the reference recipe by default:

- SGD (lr 0.01, momentum 0.9, weight decay 5e-4) on the adapter parameters; CLIP frozen and in eval mode; the adapter
  in fp32 even when CLIP is not.
- One constant warm-up epoch at 1e-5, then `CosineAnnealingLR(T_max=epochs)` from its first value, stepped once per
  epoch, exactly as Dassl's `ConstantWarmupScheduler` does it (see `learning_rate_at`).
- DGCNN label smoothing 0.2 (the model's loss), batches of 32 with `drop_last` when there are at least 32 clouds.
- Per-cloud augmentation: per-axis scale U(2/3, 3/2) then per-axis shift U(-0.2, 0.2) (the reference's point shuffle
  is left out: the projection does not depend on point order, up to float rounding).
- Model selection on the validation set after every `eval_every` epochs (the best adapter is kept, in memory and in
  `output_dir/best/`); without a validation set the last adapter is kept.

When augmentation is off (`augment=False`; `cache_features` then defaults to on) the CLIP view features are computed
once and the epochs cost only the adapter. Both paths give bitwise the same features: the image tower encodes each cloud
in a call of its own shape, whatever batch it arrives in (see `PointCLIPModel.get_view_features`).

Runs are seeded and resumable: after each epoch `output_dir/checkpoint/` holds the adapter, the optimiser state, the
RNG states and the history as safetensors and JSON (never pickle), replaced atomically, and
`train_adapter(..., resume=True)` continues bit-exactly from it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .atomic_files import write_folder_atomically
from .configuration_pointclip import PointCLIPConfig
from .data import check_point_cloud_dataset
from .labels import check_labels
from .modeling_pointclip import PointCLIPModel
from .pipeline_pointclip import label_embeddings
from .processing_pointclip import processor_for_model

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"
RESULT_FILE = "training_result.json"
STATE_FILE = "trainer_state.json"
ADAPTER_FILE = "model.safetensors"
BEST_ADAPTER_FILE = "best_model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FORMAT_VERSION = 1
# Settings that may change between a run and its resumption without changing the result.
RESUME_FREE_SETTINGS = ("device", "progress", "num_workers")


@dataclass
class TrainingConfig:
    """
    Hyper-parameters of `train_adapter`; the defaults are PointCLIP's few-shot recipe. JSON-serialisable with
    `to_dict()` / `from_dict()`.

    Args:
        epochs: training epochs (250).
        batch_size: clouds per step (32); `drop_last` applies when the training set holds at least this many.
        learning_rate, momentum, weight_decay: SGD settings (0.01, 0.9, 5e-4).
        warmup_epochs, warmup_lr: constant warm-up epochs and their learning rate (1 epoch at 1e-5).
        label_smoothing: DGCNN-style smoothing of the loss (0.2); written to the model's config.
        augment: per-cloud random per-axis scale then shift.
        scale_range, shift_range: the augmentation's ranges ((2/3, 3/2) and +-0.2).
        seed: seeds shuffling, augmentation and dropout.
        cache_features: compute the CLIP view features once and train the adapter on them. `None` (default): on when
            `augment` is off. Cannot be combined with augmentation.
        eval_every: evaluate on the validation set after every this many epochs (and after the last one).
        num_workers: accepted for compatibility; clouds are held in memory as tensors and augmented and rendered with
            batched tensor ops in the main process, so no worker processes are used.
        device: where to train (`"cpu"`, `"cuda"`, ...); the model is moved there. Default: the model's device.
        progress: show tqdm progress bars.
    """

    epochs: int = 250
    batch_size: int = 32
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    label_smoothing: float = 0.2
    augment: bool = True
    scale_range: tuple[float, float] = (2 / 3, 3 / 2)
    shift_range: float = 0.2
    seed: int = 2
    cache_features: bool | None = None
    eval_every: int = 1
    num_workers: int = 0
    device: str | None = None
    progress: bool = True

    def __post_init__(self):
        self.scale_range = tuple(float(value) for value in self.scale_range)
        if self.device is not None:
            self.device = str(self.device)
        self.validate()

    def validate(self) -> None:
        """Raise a `ValueError` naming the first invalid setting."""
        for name in ("epochs", "batch_size", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("warmup_epochs", "num_workers", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
        if not self.learning_rate > 0 or not self.warmup_lr > 0:
            raise ValueError(
                f"learning_rate and warmup_lr must be positive, got {self.learning_rate} and {self.warmup_lr}."
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay}.")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}.")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}.")
        if not self.shift_range >= 0:
            raise ValueError(f"shift_range must be non-negative, got {self.shift_range}.")
        if self.augment and self.cache_features:
            raise ValueError(
                "cache_features=True cannot be combined with augment=True: augmented clouds must be rendered and "
                "encoded by CLIP again at every step. Set augment=False to train on cached features."
            )

    @property
    def use_feature_cache(self) -> bool:
        return (not self.augment) if self.cache_features is None else self.cache_features

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of all settings."""
        values = dataclasses.asdict(self)
        values["scale_range"] = list(self.scale_range)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainingConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"Unknown TrainingConfig settings {unknown}; valid ones are {sorted(names)}.")
        return cls(**values)


@dataclass
class TrainingResult:
    """
    best_epoch: the (1-based) epoch whose adapter the model holds after training.
    best_validation_accuracy: its validation accuracy (`None` without a validation set).
    history: one dict per completed epoch: `epoch`, `lr`, `train_loss`, `train_accuracy`, `seconds`, and after an
        evaluation `validation_loss` and `validation_accuracy`.
    output_dir: where the checkpoint, `best/` and `training_result.json` were written (`None` if nowhere).
    epochs_completed: epochs trained so far (less than `config.epochs` when stopped by `stop_after_epoch`).
    finished: whether all `config.epochs` epochs are done.
    """

    best_epoch: int | None
    best_validation_accuracy: float | None
    history: list[dict] = field(default_factory=list)
    output_dir: str | None = None
    epochs_completed: int = 0
    finished: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------- model building


def build_few_shot_model(
    clip_model_name_or_path,
    label_names,
    projection_style: str = "pointclip_v1_fewshot",
    *,
    seed: int | None = None,
    dtype: torch.dtype | str | None = None,
    **config_overrides,
) -> PointCLIPModel:
    """
    A PointCLIP with a freshly initialised inter-view adapter for `label_names`, on top of the CLIP checkpoint
    `clip_model_name_or_path` (a Hub id or a local folder).

    Args:
        clip_model_name_or_path: the base CLIP; recorded as `config.clip_model_name_or_path`.
        label_names: the classes, in logit order.
        projection_style: `"pointclip_v1_fewshot"` (10 views, the reference) or another style of `pointclip_hf`.
        seed: seed of the adapter's initialisation (the global RNG state is left untouched); `None` draws from the
            global RNG.
        dtype: dtype of CLIP (e.g. `torch.bfloat16`); the adapter is always fp32.
        **config_overrides: further [`PointCLIPConfig`] settings (`prompt_templates`, `adapter_ratio`, ...). The
            prompt templates default to the projection style's.
    """
    from transformers import CLIPConfig

    labels = check_labels(label_names)
    source = os.fspath(clip_model_name_or_path)
    for reserved in ("clip_config", "use_adapter", "label_names", "clip_model_name_or_path"):
        if reserved in config_overrides:
            raise ValueError(f"{reserved} is set by build_few_shot_model; do not pass it.")
    config = PointCLIPConfig(
        clip_config=CLIPConfig.from_pretrained(source),
        clip_model_name_or_path=source,
        use_adapter=True,
        label_names=labels,
        projection_style=projection_style,
        **config_overrides,
    )
    load_kwargs = {} if dtype is None else {"dtype": dtype}
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = PointCLIPModel.from_pretrained(source, config=config, **load_kwargs)
    model.adapter.float()
    return model


# ---------------------------------------------------------------------------------------------------- schedule


def learning_rate_at(epoch: int, config: TrainingConfig) -> float:
    """
    Learning rate of the 0-based `epoch`: `warmup_lr` for the warm-up epochs, then the cosine
    `lr * (1 + cos(pi * t / epochs)) / 2` from t = 0. This is the sequence Dassl's `ConstantWarmupScheduler`
    (with `WARMUP_RECOUNT=True`) wrapped around `CosineAnnealingLR(T_max=epochs)` produces when stepped once per
    epoch: the successor is first stepped at the end of the first cosine epoch, so epoch `warmup_epochs` runs at the
    full learning rate and epoch e at the cosine value of step `e - warmup_epochs`.
    """
    if epoch < config.warmup_epochs:
        return config.warmup_lr
    step = epoch - config.warmup_epochs
    return config.learning_rate * (1 + math.cos(math.pi * step / config.epochs)) / 2


def learning_rate_schedule(config: TrainingConfig) -> list[float]:
    """The learning rate of every epoch."""
    return [learning_rate_at(epoch, config) for epoch in range(config.epochs)]


# ---------------------------------------------------------------------------------------------------- data


def augment_point_clouds(
    points: torch.Tensor,
    generator: torch.Generator,
    scale_range: tuple[float, float] = (2 / 3, 3 / 2),
    shift_range: float = 0.2,
) -> torch.Tensor:
    """PointCLIP's `translate_pointcloud` for a batch `[B, N, 3]`: per cloud and axis, scale by U(scale_range) then
    shift by U(-shift_range, shift_range). Random numbers come from the CPU `generator` (scales first, then shifts)."""
    batch = points.shape[0]
    scale = torch.empty(batch, 1, 3, dtype=torch.float32).uniform_(*scale_range, generator=generator)
    shift = torch.empty(batch, 1, 3, dtype=torch.float32).uniform_(-shift_range, shift_range, generator=generator)
    return points * scale.to(points) + shift.to(points)


@dataclass
class _Split:
    name: str
    points: torch.Tensor  # [N, num_points, 3], prepared
    labels: torch.Tensor  # [N] int64
    features: torch.Tensor | None = None  # [N, V, C] cached CLIP view features


def _check_dataset(dataset, name: str, label_names: list[str]) -> np.ndarray:
    check_point_cloud_dataset(dataset, f"{name} dataset")
    labels = np.asarray(dataset["label"])
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"The {name} dataset's 'label' column must hold integer class ids, got dtype {labels.dtype}.")
    bad = labels[(labels < 0) | (labels >= len(label_names))]
    if bad.size:
        raise ValueError(
            f"The {name} dataset has label ids {sorted(set(bad.tolist()))[:10]} outside [0, {len(label_names)}): the "
            f"model knows {len(label_names)} classes ({label_names})."
        )
    names = getattr(getattr(dataset, "features", {}).get("label"), "names", None)
    if names is not None and list(names) != list(label_names):
        warnings.warn(
            f"The {name} dataset's ClassLabel names {list(names)[:8]}... differ from the model's label_names "
            f"{list(label_names)[:8]}...; label id i is trained as label_names[i].",
            stacklevel=3,
        )
    return labels


def _load_split(dataset, name: str, label_names, feature_extractor, device, chunk: int, progress: bool) -> _Split:
    labels = _check_dataset(dataset, name, label_names)
    rows = dataset.select_columns(["points"]).with_format("torch")
    prepared = []
    for start in tqdm(range(0, len(rows), chunk), desc=f"Reading {name}", disable=not progress, leave=False):
        prepared.append(feature_extractor.prepare_points(rows[start : start + chunk]["points"]))
    points = torch.cat(prepared).to(device)
    return _Split(name, points, torch.as_tensor(labels, dtype=torch.long, device=device))


def _view_features(model, feature_extractor, points: torch.Tensor) -> torch.Tensor:
    """Render and encode prepared clouds; the result is a normal (not inference-mode) tensor usable in training."""
    with torch.inference_mode():
        features = model.get_view_features(feature_extractor.render(points))
    return features.clone()


def _cache_features(model, feature_extractor, split: _Split, chunk: int, progress: bool) -> torch.Tensor:
    features = []
    starts = range(0, len(split.points), chunk)
    for start in tqdm(starts, desc=f"Encoding {split.name}", disable=not progress, leave=False):
        features.append(_view_features(model, feature_extractor, split.points[start : start + chunk]))
    return torch.cat(features)


def class_names_for(model, dataset) -> list[str]:
    """The classes a model scores a labelled dataset against: its `config.label_names`, else the dataset's
    `ClassLabel` names."""
    names = model.config.label_names or getattr(getattr(dataset, "features", {}).get("label"), "names", None)
    if not names:
        raise ValueError("The model has no config.label_names and the dataset's 'label' column is not a ClassLabel.")
    return check_labels(list(names))


def encode_dataset(model, dataset, batch_size: int = 32, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """
    One CLIP pass over a labelled dataset: view features `[N, V, C]` (before normalisation, as
    `model.get_view_features` returns them) and labels `[N]`. The cache behind fast adapter training, the view-weight
    and prompt searches and the ensembles; prompts, view weights and the adapter can then be tried at no CLIP cost.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    extractor = processor_for_model(model).feature_extractor
    class_names = class_names_for(model, dataset)
    split = _load_split(dataset, "dataset", class_names, extractor, model.device, batch_size, progress)
    return _cache_features(model, extractor, split, batch_size, progress), split.labels


# ---------------------------------------------------------------------------------------------------- checkpoints


def _adapter_tensors(adapter: torch.nn.Module) -> dict:
    """A snapshot (copies, never views of the live parameters) of the adapter state, fp32, on the CPU."""
    return {
        f"adapter.{key}": value.detach().to("cpu", torch.float32 if value.is_floating_point() else None, copy=True)
        for key, value in adapter.state_dict().items()
    }


def _load_adapter_tensors(adapter: torch.nn.Module, tensors: dict) -> None:
    state = {key.removeprefix("adapter."): value for key, value in tensors.items()}
    adapter.load_state_dict(state)


def _existing_checkpoint(target: Path) -> Path | None:
    """The complete checkpoint directory: `target`, or `target.old` if a crash hit between the two renames."""
    for candidate in (target, target.with_name(target.name + ".old")):
        if (candidate / STATE_FILE).exists():
            return candidate
    return None


def _rng_tensors(generator: torch.Generator, device: torch.device) -> dict:
    tensors = {"rng.generator": generator.get_state(), "rng.torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    return tensors


def _restore_rng(tensors: dict, generator: torch.Generator, device: torch.device) -> None:
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch_cpu"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


def _save_checkpoint(directory: Path, model, optimizer, generator, device, state: dict, best_adapter: dict | None):
    parameters = list(model.adapter.parameters())
    optimizer_state = optimizer.state_dict()
    tensors = {
        f"momentum_buffer.{index}": entry["momentum_buffer"].detach().to("cpu", torch.float32, copy=True)
        for index, entry in optimizer_state["state"].items()
        if entry.get("momentum_buffer") is not None
    }
    tensors.update(_rng_tensors(generator, device))
    state = dict(
        state,
        format_version=STATE_FORMAT_VERSION,
        num_parameters=len(parameters),
        optimizer={"param_groups": optimizer_state["param_groups"]},
    )

    def write(tmp: Path):
        save_file(_adapter_tensors(model.adapter), str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
        save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata={"format": "pt"})
        if best_adapter is not None:
            save_file(best_adapter, str(tmp / BEST_ADAPTER_FILE), metadata={"format": "pt"})
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")

    write_folder_atomically(directory, write)


def _read_checkpoint_state(directory: Path) -> dict:
    state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    if state.get("format_version") != STATE_FORMAT_VERSION:
        raise ValueError(f"{directory} was written by an incompatible version (format {state.get('format_version')}).")
    return state


def _load_checkpoint(directory: Path, state: dict, model, optimizer, generator, device) -> dict | None:
    """Restore adapter, optimiser and RNG states; return the best adapter's tensors (if saved)."""
    _load_adapter_tensors(model.adapter, load_file(str(directory / ADAPTER_FILE), device=str(device)))
    tensors = load_file(str(directory / OPTIMIZER_FILE))
    param_groups = state["optimizer"]["param_groups"]
    optimizer.load_state_dict(
        {
            "state": {
                int(key.rsplit(".", 1)[1]): {"momentum_buffer": value}
                for key, value in tensors.items()
                if key.startswith("momentum_buffer.")
            },
            "param_groups": param_groups,
        }
    )
    _restore_rng(tensors, generator, device)
    best_path = directory / BEST_ADAPTER_FILE
    return load_file(str(best_path)) if best_path.exists() else None


def _check_resume_compatible(state: dict, config: TrainingConfig, fingerprint: dict, directory: Path) -> None:
    saved = {k: v for k, v in state["training_config"].items() if k not in RESUME_FREE_SETTINGS}
    current = {k: v for k, v in config.to_dict().items() if k not in RESUME_FREE_SETTINGS}
    changed = {k: (saved.get(k), current[k]) for k in current if saved.get(k) != current[k]}
    if changed:
        raise ValueError(
            f"Cannot resume from {directory}: the training settings changed {changed} (saved, now). Use the same "
            "TrainingConfig, another output_dir, or resume=False to start over."
        )
    for key, value in fingerprint.items():
        if state["fingerprint"].get(key) != value:
            raise ValueError(
                f"Cannot resume from {directory}: {key} was {state['fingerprint'].get(key)!r} and is now {value!r}. "
                "Use the same model and datasets, another output_dir, or resume=False."
            )


def _save_best(directory: Path, model, processor) -> None:
    def write(tmp: Path):
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)

    write_folder_atomically(directory, write)


# ---------------------------------------------------------------------------------------------------- training


@torch.no_grad()
def _evaluate(model, features: torch.Tensor, labels: torch.Tensor, text_embeds: torch.Tensor, chunk: int = 256):
    model.adapter.eval()
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
    Train `model`'s inter-view adapter on `train_dataset` (columns `points` and `label`), CLIP frozen.

    Args:
        model: a [`PointCLIPModel`] with an adapter (see `build_few_shot_model`); its `config.label_names` give the
            classes (taken from the dataset's `ClassLabel` names when unset). Rendering uses `processor_for_model(model)`.
        train_dataset: a `datasets.Dataset` with `points` `[N_i, 3]` and integer `label` in `[0, len(label_names))`.
        validation_dataset: used for model selection only (evaluated every `config.eval_every` epochs; the adapter with
            the best accuracy is kept, the earliest on ties). Never pass the test set here. Without one, the last
            adapter is kept.
        config: the [`TrainingConfig`] (PointCLIP's recipe by default).
        output_dir: if given, `checkpoint/` is rewritten atomically after every epoch, `best/` (loadable with
            `PointCLIPModel.from_pretrained`, processor included) whenever the selected adapter changes, and
            `training_result.json` at the end.
        resume: continue from `output_dir/checkpoint/` when it exists (the result is identical to an uninterrupted
            run); `False` starts over.
        stop_after_epoch: stop once this many epochs are completed, as an interruption would (the checkpoint allows
            resuming); the model then holds the best adapter so far.

    Returns:
        A [`TrainingResult`]. The model ends in eval mode holding the selected adapter.
    """
    config = config or TrainingConfig()
    config.validate()
    if not isinstance(model, PointCLIPModel):
        raise TypeError(f"train_adapter needs a PointCLIPModel, got {type(model).__name__}.")
    if model.adapter is None:
        raise ValueError(
            "This model has no inter-view adapter to train (config.use_adapter is False); build one with "
            "build_few_shot_model(...) or PointCLIPConfig(use_adapter=True, ...)."
        )
    if stop_after_epoch is not None and stop_after_epoch < 1:
        raise ValueError(f"stop_after_epoch must be at least 1, got {stop_after_epoch}.")
    if resume and output_dir is None:
        resume = False
    model.config.label_names = label_names = class_names_for(model, train_dataset)

    device = torch.device(config.device) if config.device is not None else model.device
    model.to(device)
    model.clip.requires_grad_(False).eval()
    model.adapter.float().requires_grad_(True)
    model.config.label_smoothing = config.label_smoothing
    processor = processor_for_model(model)
    feature_extractor = processor.feature_extractor
    chunk = max(config.batch_size, 1)

    train = _load_split(train_dataset, "train", label_names, feature_extractor, device, chunk, config.progress)
    if len(train.points) < 2:
        raise ValueError("The training set must hold at least 2 clouds (the adapter's BatchNorm needs a batch of 2).")
    validation = None
    if validation_dataset is not None:
        validation = _load_split(
            validation_dataset, "validation", label_names, feature_extractor, device, chunk, config.progress
        )
    text_embeds = label_embeddings(model, processor, label_names).to(device)

    parameters = list(model.adapter.parameters())
    optimizer = torch.optim.SGD(
        parameters, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay
    )
    fingerprint = {
        "label_names": label_names,
        "num_train": len(train.points),
        "num_validation": None if validation is None else len(validation.points),
        "adapter_shapes": {k: list(v.shape) for k, v in model.adapter.state_dict().items()},
        "projection_style": model.config.projection_style,
    }
    output_dir = Path(output_dir) if output_dir is not None else None
    checkpoint_dir = output_dir / CHECKPOINT_DIR if output_dir is not None else None

    num_train = len(train.points)
    drop_last = num_train >= config.batch_size
    num_batches = num_train // config.batch_size if drop_last else 1
    cuda_devices = [device] if device.type == "cuda" else []

    with torch.random.fork_rng(devices=cuda_devices):
        generator = torch.Generator().manual_seed(config.seed)
        torch.random.default_generator.manual_seed(config.seed)
        if device.type == "cuda":
            torch.cuda.manual_seed(config.seed)
        history, start_epoch = [], 0
        best_epoch, best_accuracy, best_adapter = None, None, None
        existing = _existing_checkpoint(checkpoint_dir) if resume else None
        if existing is not None:
            state = _read_checkpoint_state(existing)
            _check_resume_compatible(state, config, fingerprint, existing)
            best_adapter = _load_checkpoint(existing, state, model, optimizer, generator, device)
            history, start_epoch = state["history"], state["epoch"]
            best_epoch, best_accuracy = state["best_epoch"], state["best_validation_accuracy"]
            logger.info("Resuming from %s after epoch %d.", existing, start_epoch)

        if config.use_feature_cache and start_epoch < config.epochs:
            train.features = _cache_features(model, feature_extractor, train, chunk, config.progress)
        if validation is not None and start_epoch < config.epochs:  # never augmented: always encoded once
            validation.features = _cache_features(model, feature_extractor, validation, chunk, config.progress)

        last_epoch = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
        epochs_bar = tqdm(
            range(start_epoch, last_epoch),
            desc="Training adapter",
            disable=not config.progress,
            initial=start_epoch,
            total=config.epochs,
        )
        for epoch in epochs_bar:
            started = time.perf_counter()
            lr = learning_rate_at(epoch, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.adapter.train()
            order = torch.randperm(num_train, generator=generator).to(device)
            loss_sum, correct, seen = 0.0, 0, 0
            for step in tqdm(range(num_batches), desc=f"Epoch {epoch + 1}", disable=not config.progress, leave=False):
                index = order[step * config.batch_size : (step + 1) * config.batch_size]
                if train.features is not None:
                    features = train.features[index]
                else:
                    points = train.points[index]
                    if config.augment:
                        points = augment_point_clouds(points, generator, config.scale_range, config.shift_range)
                    features = _view_features(model, feature_extractor, points)
                labels = train.labels[index]
                output = model(view_features=features, text_embeds=text_embeds, labels=labels)
                optimizer.zero_grad(set_to_none=True)
                output.loss.backward()
                optimizer.step()
                loss_sum += float(output.loss.detach()) * len(index)
                correct += int((output.logits.detach().argmax(-1) == labels).sum())
                seen += len(index)

            record = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / seen, "train_accuracy": correct / seen}
            improved = False
            if validation is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
                record["validation_loss"], record["validation_accuracy"] = _evaluate(
                    model, validation.features, validation.labels, text_embeds
                )
                if best_accuracy is None or record["validation_accuracy"] > best_accuracy:
                    best_epoch, best_accuracy, improved = epoch + 1, record["validation_accuracy"], True
                    best_adapter = _adapter_tensors(model.adapter)
            record["seconds"] = time.perf_counter() - started
            history.append(record)
            epochs_bar.set_postfix(
                {k: f"{v:.4g}" for k, v in record.items() if k in ("lr", "train_loss", "validation_accuracy")}
            )
            if output_dir is not None:
                if improved:
                    _save_best(output_dir / BEST_DIR, model, processor)
                state = {
                    "epoch": epoch + 1,
                    "history": history,
                    "best_epoch": best_epoch,
                    "best_validation_accuracy": best_accuracy,
                    "training_config": config.to_dict(),
                    "fingerprint": fingerprint,
                    "scheduler": {"type": "constant_warmup_cosine", "last_epoch": epoch + 1, "last_lr": lr},
                }
                _save_checkpoint(checkpoint_dir, model, optimizer, generator, device, state, best_adapter)

    epochs_completed = len(history)
    finished = epochs_completed >= config.epochs
    if validation is None:
        best_epoch, best_adapter = epochs_completed, None  # keep the last adapter
    elif best_adapter is not None:
        _load_adapter_tensors(model.adapter, {k: v.to(device) for k, v in best_adapter.items()})
    model.eval()
    result = TrainingResult(
        best_epoch=best_epoch,
        best_validation_accuracy=best_accuracy,
        history=history,
        output_dir=None if output_dir is None else str(output_dir),
        epochs_completed=epochs_completed,
        finished=finished,
    )
    if output_dir is not None and finished:
        if validation is None or not (output_dir / BEST_DIR / ADAPTER_FILE).exists():
            _save_best(output_dir / BEST_DIR, model, processor)
        payload = dict(result.to_dict(), training_config=config.to_dict(), label_names=label_names)
        (output_dir / RESULT_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return result


__all__ = [
    "TrainingConfig",
    "TrainingResult",
    "augment_point_clouds",
    "build_few_shot_model",
    "learning_rate_at",
    "learning_rate_schedule",
    "train_adapter",
]
