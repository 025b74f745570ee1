"""Data loading every training job shares: a sampler that resumes part-way into an epoch, the workers' set-up, an
epoch's batch iterator started with the stop signals held back from its workers, and errors raised in a worker
brought back as the one line they were."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from liteframe.errors import InputError
from liteframe.train.signals import blocked, ignore_in_worker, start_forkserver


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` that can start part-way into an epoch: `set_epoch(epoch, start)` skips the first
    `start` indices of this rank's share, so a resumed run continues with the very next batch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


def worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers decode and lay out samples; threads would fight the training process
    ignore_in_worker()


@contextlib.contextmanager
def batches(loader: DataLoader) -> Iterator[Iterator[Any]]:
    """`iter(loader)` for the block, its workers started with the stop signals blocked (see
    `liteframe.train.signals`) and shut down when the block ends, however it ends: a worker ignores SIGTERM, so
    multiprocessing's own last resort at exit (terminate, then wait) would wait forever for one left running."""
    if loader.num_workers and getattr(loader.multiprocessing_context, "get_start_method", str)() == "forkserver":
        start_forkserver()
    with blocked():
        iterator = iter(loader)
    try:
        yield iterator
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)  # DataLoader's clean stop of its workers
        if shutdown is not None:
            shutdown()


def next_batch(batches: Iterator[Any]) -> Any:
    """The next batch; an input error raised in a worker comes back as its own one-line message, without the
    worker's traceback that DataLoader folds into it."""
    try:
        return next(batches)
    except InputError as err:  # VideoDecodeError too
        raise type(err)(worker_message(str(err))) from None


def worker_message(text: str) -> str:
    """DataLoader re-raises a worker's error as "Caught X in DataLoader worker process N.\\nOriginal Traceback ...
    \\nmodule.X: message": the message alone (the text unchanged when it is not such a re-raise)."""
    if "\nOriginal Traceback" not in text:
        return text
    last = text.rstrip().rsplit("\n", 1)[-1]
    name, sep, message = last.partition(": ")
    return message if sep and " " not in name else last
