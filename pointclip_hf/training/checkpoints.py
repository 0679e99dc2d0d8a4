"""Resumable training checkpoints: adapter, optimiser and RNG states as safetensors, the rest as JSON (never pickle).

`output_dir/checkpoint/` is rewritten atomically after every epoch (`write_folder_atomically`; after a crash between
its two renames the complete previous version is `checkpoint.old/`). `output_dir/best/` holds the selected adapter as
a loadable model folder, processor included.
"""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic_files import write_folder_atomically
from ..model.inter_view_adapter import adapter_state_dict
from .config import TrainingConfig

CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"
RESULT_FILE = "training_result.json"
STATE_FILE = "trainer_state.json"
ADAPTER_FILE = "model.safetensors"
BEST_ADAPTER_FILE = "best_model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FORMAT_VERSION = 1
# Settings that may change between a run and its resumption without changing the result.
RESUME_FREE_SETTINGS = ("device", "progress")
_STATE_KEYS = (
    "epoch", "history", "best_epoch", "best_validation_accuracy", "training_config", "fingerprint", "optimizer"
)  # fmt: skip


def head_tensors(heads: torch.nn.ModuleDict) -> dict[str, torch.Tensor]:
    """
    A snapshot of the trained heads: their [`adapter_state_dict`] (fp32), copied to the CPU (never views of the live
    parameters); `heads.load_state_dict` puts it back.

    Args:
        heads (`torch.nn.ModuleDict`):
            `model.trainable_heads()`: the inter-view adapter and the cache, those the model has.

    Returns:
        `dict[str, torch.Tensor]`: their state dict, keys as in the model (`adapter.*`, `cache.*`).
    """
    return {key: value.detach().to("cpu", copy=True) for key, value in adapter_state_dict(heads.state_dict()).items()}


def existing_checkpoint(target: Path) -> Path | None:
    """
    The complete checkpoint folder: `target`, or `target.old` if a crash hit between the two renames.

    Args:
        target (`Path`):
            The checkpoint folder.

    Returns:
        `Path` or `None` when there is no complete checkpoint.
    """
    for candidate in (target, target.with_name(target.name + ".old")):
        if (candidate / STATE_FILE).exists():
            return candidate
    return None


def _rng_tensors(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    tensors = {"rng.generator": generator.get_state(), "rng.torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    return tensors


def _restore_rng(tensors: dict[str, torch.Tensor], generator: torch.Generator, device: torch.device) -> None:
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch_cpu"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


def save_checkpoint(
    directory: Path,
    model,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device: torch.device,
    state: dict,
    best_adapter: dict | None,
) -> None:
    """
    Atomically (re)write a checkpoint folder.

    Args:
        directory (`Path`):
            The checkpoint folder.
        model ([`PointCLIPModel`]):
            Its trained heads (adapter, cache) are saved.
        optimizer (`torch.optim.Optimizer`):
            The SGD optimiser; its momentum buffers and parameter groups are saved.
        generator (`torch.Generator`):
            The training generator (shuffling, augmentation); saved with the global CPU and CUDA RNG states.
        device (`torch.device`):
            The training device.
        state (`dict`):
            The JSON part (epoch, history, selection, settings, fingerprint); the format version is added.
        best_adapter (`dict`, *optional*):
            The `head_tensors` snapshot of the selected heads.
    """
    heads = model.trainable_heads()
    parameters = list(heads.parameters())
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
        save_file(head_tensors(heads), str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
        save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata={"format": "pt"})
        if best_adapter is not None:
            save_file(best_adapter, str(tmp / BEST_ADAPTER_FILE), metadata={"format": "pt"})
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")

    write_folder_atomically(directory, write)


def read_checkpoint_state(directory: Path) -> dict:
    """
    The JSON state of a checkpoint folder.

    Args:
        directory (`Path`):
            A complete checkpoint folder.

    Returns:
        `dict`: the state `save_checkpoint` wrote; a `ValueError` if another format version wrote it.
    """
    try:
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        problem = None
    except (ValueError, RecursionError) as error:
        state, problem = None, f"is not valid JSON ({error})"
    if isinstance(state, dict) and state.get("format_version") != STATE_FORMAT_VERSION:
        raise ValueError(f"{directory} was written by an incompatible version (format {state.get('format_version')}).")
    problem = problem or _state_problem(state)
    if problem is not None:
        raise DamagedCheckpointError(directory, f"{STATE_FILE} {problem}")
    return state


def _state_problem(state) -> str | None:
    """What is wrong with a checkpoint state of the right format version (`None`: nothing)."""
    if not isinstance(state, dict):
        return "is not a JSON object"
    missing = [key for key in _STATE_KEYS if key not in state]
    if missing:
        return f"lacks {missing}"
    if not all(isinstance(state[key], dict) for key in ("optimizer", "fingerprint", "training_config")):
        return "has a malformed optimizer, fingerprint or settings"
    return _progress_problem(state)


def _progress_problem(state: dict) -> str | None:
    """What is wrong with the progress a checkpoint state records (`None`: nothing): `epoch` completed epochs out of
    the settings' `epochs`, one `history` record per epoch in order, and a selected epoch and accuracy among them."""
    epoch, history, epochs = state["epoch"], state["history"], state["training_config"].get("epochs")
    if not _is_count(epochs) or not _is_count(epoch) or not 1 <= epoch <= epochs:
        return f"has epoch {epoch!r}, not a completed epoch of the {epochs!r} planned"
    if not isinstance(history, list) or len(history) != epoch:
        return f"has a history that is not a list of {epoch} epoch records"
    if any(not isinstance(record, dict) or record.get("epoch") != number for number, record in enumerate(history, 1)):
        return "has a history whose records are not the epochs 1, 2, ... in order"
    best_epoch, best_accuracy = state["best_epoch"], state["best_validation_accuracy"]
    if best_epoch is not None and (not _is_count(best_epoch) or not 1 <= best_epoch <= epoch):
        return f"has best_epoch {best_epoch!r}, not one of its {epoch} epochs"
    if best_accuracy is not None and not (isinstance(best_accuracy, (int, float)) and 0 <= best_accuracy <= 1):
        return f"has best_validation_accuracy {best_accuracy!r}, not a number in [0, 1]"
    return None


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class DamagedCheckpointError(ValueError):
    """A checkpoint folder that cannot be read back; the message names it and how to start over."""

    def __init__(self, directory: Path, problem: str):
        super().__init__(
            f"The checkpoint {directory} is damaged: {problem}. Delete it, or pass resume=False (--no-resume on the "
            "command line) to start over."
        )


def load_checkpoint(
    directory: Path, state: dict, model, optimizer: torch.optim.Optimizer, generator: torch.Generator, device
) -> dict | None:
    """
    Restore the adapter, optimiser and RNG states of a checkpoint.

    Args:
        directory (`Path`):
            A complete checkpoint folder.
        state (`dict`):
            Its `read_checkpoint_state`.
        model ([`PointCLIPModel`]):
            Receives the weights of its trained heads.
        optimizer (`torch.optim.Optimizer`):
            Receives the momentum buffers and parameter groups.
        generator (`torch.Generator`):
            Receives the training generator's state.
        device (`torch.device`):
            The training device.

    Returns:
        `dict` or `None`: the `head_tensors` snapshot of the selected heads, if one was saved.
    """
    adapter, tensors, best = _read_checkpoint_files(directory, device)
    try:
        model.trainable_heads().load_state_dict(adapter)
        optimizer.load_state_dict(
            {
                "state": {
                    int(key.rsplit(".", 1)[1]): {"momentum_buffer": value}
                    for key, value in tensors.items()
                    if key.startswith("momentum_buffer.")
                },
                "param_groups": state["optimizer"]["param_groups"],
            }
        )
        _restore_rng(tensors, generator, device)
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        problem = f"its tensors do not fit this run ({type(error).__name__}: {error})"
        raise DamagedCheckpointError(directory, problem) from None
    return best


def _read_checkpoint_files(directory: Path, device) -> tuple[dict, dict, dict | None]:
    """The adapter, optimiser/RNG and best-adapter tensors of a checkpoint; a damaged file raises."""
    try:
        adapter = load_file(str(directory / ADAPTER_FILE), device=str(device))
        tensors = load_file(str(directory / OPTIMIZER_FILE))
        best_path = directory / BEST_ADAPTER_FILE
        best = load_file(str(best_path)) if best_path.exists() else None
    except (SafetensorError, OSError, ValueError) as error:
        raise DamagedCheckpointError(directory, f"a tensor file cannot be read ({error})") from None
    return adapter, tensors, best


def check_resume_compatible(state: dict, config: TrainingConfig, fingerprint: dict, directory: Path) -> None:
    """
    Refuse to resume a run whose settings (other than `RESUME_FREE_SETTINGS`), model or datasets changed.

    Args:
        state (`dict`):
            The checkpoint's `read_checkpoint_state`.
        config ([`TrainingConfig`]):
            The settings of the resuming run.
        fingerprint (`dict`):
            Labels, dataset sizes, adapter shapes and projection style of the resuming run.
        directory (`Path`):
            The checkpoint folder, named in the `ValueError`.
    """
    saved = {k: v for k, v in state["training_config"].items() if k not in RESUME_FREE_SETTINGS}
    current = {k: v for k, v in config.to_dict().items() if k not in RESUME_FREE_SETTINGS}
    changed = {k: (saved.get(k), current[k]) for k in current if saved.get(k) != current[k]}
    saved = state["fingerprint"]
    changed.update({k: (saved.get(k), value) for k, value in fingerprint.items() if saved.get(k) != value})
    if changed:
        raise ValueError(
            f"Cannot resume from {directory}: the training settings changed, or the model or datasets did: {changed} "
            "(saved, now). Use the same TrainingConfig, model and datasets, another output_dir, or resume=False "
            "(--no-resume on the command line) to start over."
        )


def save_best(directory: Path, model, processor) -> None:
    """
    Atomically (re)write a model folder loadable with `PointCLIPModel.from_pretrained`, processor included.

    Args:
        directory (`Path`):
            The folder (`output_dir/best`).
        model ([`PointCLIPModel`]):
            The model holding the selected adapter.
        processor ([`PointCLIPProcessor`]):
            Its processor.
    """

    def write(tmp: Path):
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)

    write_folder_atomically(directory, write)
