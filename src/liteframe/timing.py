"""Wall-clock timing for the pipeline's latency breakdown and the benchmarks: warm-up, synchronise, median."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

# The latency breakdown of one answer (SPEC 7), in milliseconds: what `ask` reports and `eval` averages.
LATENCY_KEYS = ("decode", "preprocess", "vit", "llm_prefill", "generation", "total")


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it; a no-op on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], repeats: int = 10, warmup: int = 2, device: torch.device | str = "cpu") -> float:
    """Median wall time of `fn()` in milliseconds over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class Stopwatch:
    """Named laps of one run, synchronised on GPU: `with watch("vit"): ...`; `watch.ms` maps names to ms."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = device
        self.ms: dict[str, float] = {}

    def __call__(self, name: str) -> "_Lap":
        return _Lap(self, name)


class _Lap:
    def __init__(self, watch: Stopwatch, name: str):
        self.watch, self.name = watch, name

    def __enter__(self):
        synchronize(self.watch.device)
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        synchronize(self.watch.device)
        self.watch.ms[self.name] = self.watch.ms.get(self.name, 0.0) + (time.perf_counter() - self.start) * 1e3
