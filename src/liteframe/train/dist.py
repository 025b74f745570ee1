"""torch.distributed set-up shared by the training and caching jobs: one process per device under torchrun,
gloo on CPU and NCCL on GPU; a plain single process needs no process group at all."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from liteframe.devices import resolve_device


@dataclass
class Context:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Context:
    """Join the process group torchrun describes in the environment (if any) and pick this rank's device."""
    use_cuda = resolve_device(device).type == "cuda"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    target = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=target if use_cuda else None)
    return Context(rank, world, target)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], ctx: Context) -> list[float]:
    """Sum a few numbers over ranks (one collective)."""
    if ctx.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: Any, ctx: Context) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order (one collective; for rare paths, not every step)."""
    if ctx.world == 1:
        return [obj]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: Context) -> None:
    if ctx.world > 1:
        dist.barrier()
