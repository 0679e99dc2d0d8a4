"""Where PointCLIP computes on the CPU: the calling thread and a few worker threads, each running torch with one
intra-op thread.

Every CPU computation of the model, the processor and the projections runs on these threads in calls whose shapes
depend only on their own cloud (or sentence), so its bits do not depend on the thread count, on the batch, or on the
machine's load. Parallelism comes from computing several clouds (or half-clouds) at once instead of splitting every
small operation across OpenMP threads, which on a shared machine waits at a barrier for a descheduled thread.

The number of threads computing at once is the caller's `torch.get_num_threads()` (`torch.set_num_threads`,
`OMP_NUM_THREADS`, or `pointclip --threads`): the caller itself and one worker less. It changes speed only, never
results. Other devices run in the calling thread.
"""

import contextlib
import os
import queue
import threading
from concurrent.futures import Future

import torch

_local = threading.local()
_pool_lock = threading.Lock()
_pools = {}


class _WorkerThreads:
    """`count` daemon threads, each with one torch intra-op thread, serving tasks from one queue."""

    def __init__(self, count: int):
        self.count = count
        self.tasks = queue.SimpleQueue()
        started = threading.Barrier(count + 1)
        caller_threads = torch.get_num_threads()
        for index in range(count):
            threading.Thread(target=self._serve, args=(started,), name=f"pointclip-cpu-{index}", daemon=True).start()
        started.wait()
        # A worker's torch.set_num_threads(1) also became the default of threads created later: restore it.
        torch.set_num_threads(caller_threads)

    def _serve(self, started: threading.Barrier) -> None:
        torch.get_num_threads()  # torch sets a thread's count on its first use: do it now, then override it
        torch.set_num_threads(1)
        _local.is_worker = True
        started.wait()
        while task := self.tasks.get():
            _run(task)

    def run_queued_tasks(self) -> None:
        """Run tasks from the queue in the calling thread until it is empty."""
        with contextlib.suppress(queue.Empty):
            while True:
                _run(self.tasks.get_nowait())


def _run(task) -> None:
    future, function, args, grad_enabled, inference_mode = task
    if not future.set_running_or_notify_cancel():
        return
    try:
        with torch.inference_mode(inference_mode), torch.set_grad_enabled(grad_enabled):
            future.set_result(function(*args))
    except BaseException as error:  # noqa: BLE001 - handed to the caller, which raises it
        future.set_exception(error)


@contextlib.contextmanager
def _as_worker():
    """The calling thread computes like a worker: one intra-op thread, nested work inline."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    _local.is_worker = True
    try:
        yield
    finally:
        _local.is_worker = False
        torch.set_num_threads(saved)


def _workers() -> _WorkerThreads | None:
    """The workers beside the caller for its thread count, kept for the life of the process: a program that switches
    between thread counts reuses them instead of starting threads in every call (a few ms, more than a batch of V1
    maps). None at one thread."""
    count = num_worker_threads() - 1
    if count == 0:
        return None
    with _pool_lock:
        if count not in _pools:
            _pools[count] = _WorkerThreads(count)
        return _pools[count]


def _forget_workers_after_fork() -> None:
    """A forked child has none of its parent's threads, and OpenMP cannot start threads in it: one thread (as
    DataLoader workers do), and new workers when needed."""
    global _pool_lock
    _pools.clear()
    _pool_lock = threading.Lock()
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_forget_workers_after_fork)


def runs_inline(device) -> bool:
    """Whether work for `device` runs in the calling thread: on accelerators, and inside a worker already."""
    return torch.device(device).type != "cpu" or getattr(_local, "is_worker", False)


def num_worker_threads(device="cpu") -> int:
    """How many calls [`map_on_cpu_threads`] runs at once for `device`: the caller's `torch.get_num_threads()` on the
    CPU, 1 elsewhere or inside a worker."""
    return 1 if runs_inline(device) else torch.get_num_threads()


def map_on_cpu_threads(function, items, device="cpu") -> list:
    r"""
    `[function(item) for item in items]`, each call with one intra-op thread when `device` is the CPU: the caller
    runs them alone at one thread, and takes its share beside the workers at more.

    Args:
        function (`Callable`):
            Called once per item; its result must depend on its item alone.
        items (`Iterable`):
            The work, e.g. one cloud's images per item.
        device (`torch.device` or `str`, *optional*, defaults to `"cpu"`):
            Where the work computes; anything but the CPU runs in the calling thread.

    Returns:
        `list`: the results, in the order of `items`.
    """
    items = list(items)
    if runs_inline(device):
        return [function(item) for item in items]
    workers = _workers() if len(items) > 1 else None
    if workers is None:
        with _as_worker():
            return [function(item) for item in items]
    modes = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    tasks = [(Future(), function, (item,), *modes) for item in items]
    for task in tasks:
        workers.tasks.put(task)
    try:
        with _as_worker():
            workers.run_queued_tasks()
        return [future.result() for future, *_ in tasks]
    finally:
        for future, *_ in tasks:
            future.cancel()


def run_on_cpu_thread(function, *args, device="cpu", **kwargs):
    """`function(*args, **kwargs)` with one intra-op thread when `device` is the CPU (see [`map_on_cpu_threads`])."""
    return map_on_cpu_threads(lambda _: function(*args, **kwargs), [None], device)[0]


def cat_on_cpu_threads(function, items, device="cpu") -> torch.Tensor:
    """`torch.cat([function(item) for item in items])`, the calls and the concatenation with one intra-op thread each
    (see [`map_on_cpu_threads`]): a concatenation on all the caller's threads would, on a shared machine, wait at
    OpenMP barriers for descheduled ones (26 ms instead of 1.7 ms for the maps of 32 V1 clouds at 2 threads)."""
    parts = map_on_cpu_threads(function, items, device)
    return parts[0] if len(parts) == 1 else run_on_cpu_thread(torch.cat, parts, device=device)


__all__ = ["cat_on_cpu_threads", "map_on_cpu_threads", "num_worker_threads", "run_on_cpu_thread", "runs_inline"]
