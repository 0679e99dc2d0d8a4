"""
Several processes sharing one run: finding the `accelerate.Accelerator` of an `accelerate launch` / `torchrun` start,
and the few collective steps of a run (agreeing on set-up errors, summing counts, gathering records).

Process `r` of `W` predicts the indices `r, r + W, r + 2W, ...`; without an accelerator (or with one process) a run
is a single process of rank 0.
"""

import atexit
import os

import numpy as np
import torch

_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def resolve_accelerator(accelerator):
    """
    The given accelerator, or one created when this process is one of several launched together; else `None`.

    Raises:
        ImportError: several processes were launched but `accelerate` is not installed.
    """
    if accelerator is not None:
        return accelerator
    world_size = _launched_world_size()
    try:
        from accelerate import Accelerator, PartialState
        from accelerate.utils import parse_flag_from_env
    except ImportError:
        if world_size > 1:
            raise ImportError(
                f"This process is one of {world_size} launched together, but accelerate is not installed; install it "
                "(pip install accelerate) to share the work, or run a single process."
            ) from None
        return None
    already = PartialState._shared_state != {}
    if not already and world_size <= 1:
        return None
    # On a machine without accelerators, accelerate only recognises a CPU multi-process launch when asked for the CPU.
    cpu = False if already else (parse_flag_from_env("ACCELERATE_USE_CPU") or not _has_accelerator_device())
    had_group = torch.distributed.is_available() and torch.distributed.is_initialized()
    if PartialState(cpu=cpu).num_processes <= 1:
        return None
    accelerator = Accelerator(cpu=cpu)
    if not had_group and torch.distributed.is_initialized():
        atexit.register(_destroy_process_group)  # else gloo may abort the interpreter at exit
    return accelerator


def _launched_world_size() -> int:
    for name in _WORLD_SIZE_VARIABLES:
        if os.environ.get(name, "").strip().isdigit():
            return int(os.environ[name])
    return 1


def _has_accelerator_device() -> bool:
    if hasattr(torch, "accelerator"):
        return torch.accelerator.is_available()
    return torch.cuda.is_available()


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rank_and_world_size(accelerator) -> tuple[int, int]:
    """`(process index, number of processes)`; `(0, 1)` without an accelerator."""
    if accelerator is not None and accelerator.num_processes > 1:
        return accelerator.process_index, accelerator.num_processes
    return 0, 1


def is_distributed(accelerator) -> bool:
    return accelerator is not None and accelerator.num_processes > 1


def is_main(accelerator) -> bool:
    return accelerator is None or accelerator.is_main_process


def run_device(model, accelerator) -> torch.device:
    """Where the run computes: the accelerator's device (the model is moved there), else the model's."""
    return model.device if accelerator is None else accelerator.device


def same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.type == "cpu" or (a.index or 0) == (b.index or 0))


def agree(accelerator, error: BaseException | None) -> None:
    """
    Raise on every process when the set-up failed on any, instead of leaving the others waiting.

    Args:
        accelerator (`accelerate.Accelerator`, *optional*):
            The run's accelerator.
        error (`BaseException`, *optional*):
            What failed on this process; re-raised here, while the other processes raise a `RuntimeError` naming it.
    """
    messages = []
    if is_distributed(accelerator):
        from accelerate.utils import gather_object

        messages = gather_object([None if error is None else f"{type(error).__name__}: {error}"])
    failed = [(rank, message) for rank, message in enumerate(messages) if message is not None]
    if error is None and failed:
        error = RuntimeError(f"Process {failed[0][0]} failed while setting up: {failed[0][1]}")
    if error is not None:
        raise error


def sum_across_processes(accelerator, counts: np.ndarray) -> np.ndarray:
    """
    Sum an integer array over the processes.

    Args:
        accelerator (`accelerate.Accelerator`, *optional*):
            The run's accelerator; without one (or with one process) `counts` comes back as it is.
        counts (`np.ndarray` of dtype `int64`):
            This process's counts.
    """
    if not is_distributed(accelerator):
        return counts
    summed = accelerator.reduce(torch.from_numpy(counts).to(accelerator.device), reduction="sum")
    return summed.cpu().numpy().astype(np.int64)


def gather_records(accelerator, records: list[dict]) -> list[dict]:
    """
    Every process's records, sorted by `index`, on every process.

    Args:
        accelerator (`accelerate.Accelerator`, *optional*):
            The run's accelerator; without one (or with one process) `records` comes back as it is.
        records (`list[dict]`):
            This process's records, each with an `index`.
    """
    if not is_distributed(accelerator):
        return records
    from accelerate.utils import gather_object

    gathered = [record for part in gather_object([records]) for record in part]
    gathered.sort(key=lambda record: record["index"])
    return gathered


def wait_for_everyone(accelerator) -> None:
    if is_distributed(accelerator):
        accelerator.wait_for_everyone()
