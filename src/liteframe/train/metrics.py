"""Metric logging every job shares: a tqdm bar, `metrics.jsonl` (one JSON record per logged step) and TensorBoard
scalars, written by rank 0 only. A resumed job drops the records logged after its checkpoint, so each step appears
once however often the job was interrupted."""
from __future__ import annotations

import json
import logging
import resource
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from liteframe.io import atomic_write

log = logging.getLogger("liteframe.train")


class MetricLog:
    """`log.step()` advances the bar; `log.write({"step": s, ...})` appends a record and its scalars;
    `close()` at the end. On ranks other than 0 every call does nothing."""

    def __init__(self, folder: str | Path, start_step: int, total_steps: int, desc: str, main: bool = True):
        self.folder, self.main = Path(folder), main
        self.bar = tqdm(total=total_steps, initial=start_step, disable=not main, desc=desc, dynamic_ncols=True)
        self.writer = None
        if main:
            from torch.utils.tensorboard import SummaryWriter

            self.folder.mkdir(parents=True, exist_ok=True)
            truncate_metrics(self.folder / "metrics.jsonl", start_step)
            self.writer = SummaryWriter(str(self.folder / "tensorboard"), purge_step=start_step + 1)

    def step(self, **postfix: float) -> None:
        self.bar.update(1)
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()})

    def write(self, metrics: dict[str, Any]) -> None:
        if not self.main:
            return
        with open(self.folder / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        for key, value in metrics.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, metrics["step"])

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop lines logged after the checkpoint (the resumed run logs those steps again; from step 0, all
    of them) and lines that are not whole records (a kill or a full disk mid-write), which would otherwise stop
    every later resume."""
    if not path.is_file():
        return
    logged = [(line, _logged_step(line)) for line in path.read_text().splitlines() if line]
    keep = [line for line, at in logged if at is not None and at <= step] if step else []
    torn = sum(at is None for _, at in logged)
    if torn:
        log.warning("%s: dropped %d unreadable line(s) (a write cut short)", path, torn)
    atomic_write(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in keep)))


def _logged_step(line: str) -> int | None:
    """The step of a metrics line; None for a line that is not a complete record (killed mid-write, disk full)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, TypeError, KeyError):  # json.JSONDecodeError is a ValueError
        return None
