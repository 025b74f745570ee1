"""The set-up every training job shares: `with job_setup(cfg) as job:` joins the process group torchrun describes,
picks the device and precision, seeds torch, and loads the teacher when the config names one.

`cfg` is any job config with `device`, `precision`, `seed` and `compression`; `teacher` and `image_size` are read
when present. A training loop runs inside `with sigterm_flag() as stop:` and saves and returns once `stop.set`.
"""
from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from liteframe.compression import Compression, get_compression
from liteframe.models import Teacher
from liteframe.train.dist import Context, setup, teardown


@dataclass
class Job:
    ctx: Context
    bf16: bool  # bf16 autocast around forward passes
    compression: Compression
    teacher: Teacher | None = None
    size: int = 0  # input frame side: `image_size`, else the teacher's

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)


@contextlib.contextmanager
def job_setup(cfg: Any) -> Iterator[Job]:
    ctx = setup(cfg.device)
    try:
        cuda = ctx.device.type == "cuda"
        job = Job(ctx, bf16=cfg.precision == "bf16" or (cfg.precision == "auto" and cuda),
                  compression=get_compression(cfg.compression))
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        if getattr(cfg, "teacher", ""):
            job.teacher = Teacher.from_pretrained(cfg.teacher, dtype=torch.bfloat16 if cuda else torch.float32,
                                                  device=ctx.device)
            job.size = getattr(cfg, "image_size", 0) or job.teacher.image_size
        yield job
    finally:
        teardown()


class _Flag:
    set = False


@contextlib.contextmanager
def sigterm_flag() -> Iterator[_Flag]:
    """SIGTERM (what torchrun and cluster schedulers send) sets `flag.set` instead of ending the process, until the
    block ends; combine it over ranks (`all_sum`) before acting on it, so every rank saves at the same step."""
    flag = _Flag()

    def handle(*_):
        flag.set = True

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
