"""The thread fan-out of a read: independent work items (the passes of a plan) shared by workers (each a decoder
on a container of its own), every worker on a thread of its own taking the next item as it frees up, so a thread
slowed down takes fewer. A pass that starts at a keyframe is a chain of dependent frames that a frame-threaded
decoder cannot spread over the cores; independent passes can be (docs/results/decode.md)."""
from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, TypeVar

import torch

W, R = TypeVar("W"), TypeVar("R")

# A read of several passes runs them on as many threads as torch's intra-op threads (1 in a DataLoader worker), at
# most this many: a seek-bound pass keeps a frame-threaded decoder busy on one core at best.
MAX_THREADS = 8


def read_threads(items: int) -> int:
    """Threads for a read of `items` passes: torch's intra-op thread count, at most `MAX_THREADS` and `items`."""
    return min(MAX_THREADS, torch.get_num_threads(), items)


def fan_out(items: Sequence, workers: Sequence[W], run: Callable[[W, Iterator], R]) -> list[R]:
    """`run(worker, items_iterator)` for every worker -> their results in worker order. One worker runs in the
    caller's thread; several share `items` in order on threads named `liteframe-read-*`."""
    if len(workers) == 1:
        return [run(workers[0], iter(items))]
    work: queue.SimpleQueue = queue.SimpleQueue()
    for item in items:
        work.put(item)
    with ThreadPoolExecutor(len(workers), thread_name_prefix="liteframe-read") as pool:
        jobs = [pool.submit(run, worker, _drain(work)) for worker in workers]
        return [job.result() for job in jobs]


def _drain(work: queue.SimpleQueue) -> Iterator:
    """The items of a queue filled beforehand, until it is empty: threads share it, each taking the next item."""
    while True:
        try:
            yield work.get_nowait()
        except queue.Empty:
            return


__all__ = ["MAX_THREADS", "fan_out", "read_threads"]
