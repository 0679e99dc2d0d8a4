"""Where PointCLIP computes on the CPU: a few worker threads, each running torch with one intra-op thread.

Every CPU computation of the model, the processor and the projections runs on these threads in calls whose shapes
depend only on their own cloud (or sentence), so its bits do not depend on the thread count, on the batch, or on the
machine's load. Parallelism comes from computing several clouds (or half-clouds) at once instead of splitting every
small operation across OpenMP threads, which on a shared machine waits at a barrier for a descheduled thread.

The number of workers is the caller's `torch.get_num_threads()` (`torch.set_num_threads`, `OMP_NUM_THREADS`, or
`pointclip --threads`); it changes speed only, never results. Other devices run in the calling thread.
"""

import os
import queue
import threading
from concurrent.futures import Future

import torch

_local = threading.local()
_pool_lock = threading.Lock()
_pools = {}


class _WorkerThreads:
    """`count` daemon threads, each with one torch intra-op thread, each serving the tasks of its own queue."""

    def __init__(self, count: int):
        self.count = count
        self.queues = [queue.SimpleQueue() for _ in range(count)]
        started = threading.Barrier(count + 1)
        caller_threads = torch.get_num_threads()
        for index in range(count):
            threading.Thread(target=self._serve, args=(self.queues[index], started), name=f"pointclip-cpu-{index}",
                             daemon=True).start()  # fmt: skip
        started.wait()
        # A worker's torch.set_num_threads(1) also became the default of threads created later: restore it.
        torch.set_num_threads(caller_threads)

    def _serve(self, tasks: queue.SimpleQueue, started: threading.Barrier) -> None:
        torch.get_num_threads()  # torch sets a thread's count on its first use: do it now, then override it
        torch.set_num_threads(1)
        _local.is_worker = True
        started.wait()
        while task := tasks.get():
            future, function, args, grad_enabled, inference_mode = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                with torch.inference_mode(inference_mode), torch.set_grad_enabled(grad_enabled):
                    future.set_result(function(*args))
            except BaseException as error:  # noqa: BLE001 - handed to the caller, which raises it
                future.set_exception(error)

    def submit(self, index: int, function, args) -> Future:
        """Queue `function(*args)` on worker `index % count`: the first task of every call goes to the first worker,
        so that a call with one task always finds that worker's caches and heap warm."""
        future = Future()
        self.queues[index % self.count].put(
            (future, function, args, torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        )
        return future


def _workers() -> _WorkerThreads:
    """The workers for the caller's thread count, kept for the life of the process: a program that switches between
    thread counts reuses them instead of starting threads in every call (a few ms, more than a batch of V1 maps)."""
    count = num_worker_threads()
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
    `[function(item) for item in items]`, each call on a single-threaded worker when `device` is the CPU.

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
    workers = _workers()
    futures = [workers.submit(index, function, (item,)) for index, item in enumerate(items)]
    try:
        return [future.result() for future in futures]
    finally:
        for future in futures:
            future.cancel()


def run_on_cpu_thread(function, *args, device="cpu", **kwargs):
    """`function(*args, **kwargs)` on one single-threaded worker when `device` is the CPU (see
    [`map_on_cpu_threads`])."""
    return map_on_cpu_threads(lambda _: function(*args, **kwargs), [None], device)[0]


def cat_on_cpu_threads(function, items, device="cpu") -> torch.Tensor:
    """`torch.cat([function(item) for item in items])`, the calls on the workers (see [`map_on_cpu_threads`]) and the
    concatenation on one of them: the caller's own copy would run on all its threads, and on a shared machine wait at
    OpenMP barriers for descheduled ones (26 ms instead of 1.7 ms for the maps of 32 V1 clouds at 2 threads)."""
    parts = map_on_cpu_threads(function, items, device)
    return parts[0] if len(parts) == 1 else run_on_cpu_thread(torch.cat, parts, device=device)


__all__ = ["cat_on_cpu_threads", "map_on_cpu_threads", "num_worker_threads", "run_on_cpu_thread", "runs_inline"]
