"""The set-up every training job shares, and the training precision policy, defined once.

`with job_setup(cfg) as job:` joins the process group torchrun describes, picks the device and precision and seeds
torch; `job.load_teacher(...)` loads a teacher once the job's output is claimed. Precision: frozen weights (the
teacher, the base LLM) load as inference loads them, bf16 on CUDA and float32 on CPU (`resolve_dtype`); trained
weights and their optimiser state stay float32; forward passes run under bf16 autocast when the config's
`precision` says so (`uses_bf16`, `autocast`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from liteframe.compression import Compression, get_compression
from liteframe.devices import resolve_dtype
from liteframe.models import Teacher
from liteframe.train.dist import Context, setup, teardown


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether forward passes run under bf16 autocast: `precision` "bf16", or "auto" on CUDA."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when `bf16`, else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


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
        return autocast(self.device, self.bf16)

    def load_teacher(self, folder: str, image_size: int = 0) -> None:
        """The teacher from a teacher folder (`Teacher.from_pretrained`), frozen, on this job's device; frames
        `image_size` pixels square (0: the teacher's own)."""
        self.teacher = Teacher.from_pretrained(folder, dtype=resolve_dtype("auto", self.device), device=self.device)
        self.size = image_size or self.teacher.image_size


@contextlib.contextmanager
def job_setup(cfg: Any) -> Iterator[Job]:
    """`cfg`: a job config with `device`, `precision`, `seed` and `compression`."""
    ctx = setup(cfg.device)
    try:
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        yield Job(ctx, bf16=uses_bf16(cfg.precision, ctx.device), compression=get_compression(cfg.compression))
    finally:
        teardown()
