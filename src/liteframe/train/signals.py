"""Stopping a training job by signal: SIGTERM (what Slurm, torchrun and `kill` send) and SIGINT (Ctrl-C) set a flag
that the loop reads at the end of each step, so the job saves a checkpoint and returns instead of dying.

Slurm and terminals signal the whole process group, DataLoader workers included. A worker must not die of it (the
main process would then fail on its next batch, with the worker's traceback, before it could save), so it is never
without protection: a forked worker starts with both signals blocked (`blocked` around the creation of a DataLoader
iterator: a fork keeps the mask), a forkserver's worker with both ignored (`start_forkserver`: its server starts
ignoring them, and an ignored signal stays ignored across exec and fork), and every worker ignores them once it
runs (`ignore_in_worker`, its `worker_init_fn`).
"""
from __future__ import annotations

import contextlib
import signal
from typing import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """`signal`: the first stop signal received (None: none yet)."""

    signal: int | None = None


@contextlib.contextmanager
def stop_signals() -> Iterator[StopFlag]:
    """SIGTERM and SIGINT set `flag.signal` instead of ending the process, until the block ends. Combine the flag
    over ranks (`all_sum`) before acting on it, so every rank saves at the same step."""
    flag = StopFlag()

    def handle(signum, _frame):
        flag.signal = flag.signal or signum

    previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Hold SIGTERM and SIGINT back from this thread while the block runs (processes started meanwhile keep them
    blocked); they are delivered when it ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_forkserver() -> None:
    """Start multiprocessing's fork server (once per process) ignoring the stop signals, so that the workers it
    forks ignore them from their first instruction. This process ignores them only while the server is launched (a
    fork and an exec); a server already running is left as it is."""
    from multiprocessing import forkserver

    previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    try:
        forkserver.ensure_running()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def ignore_in_worker() -> None:
    """A DataLoader worker ignores the stop signals: the main process decides when the job stops."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
