"""What a training job checkpoints besides its model and optimiser: where it is (`TrainState`) and each rank's
random streams (`RNGState`). Both are stateful objects for `Checkpointer`. `RunResult` is what a job returns."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from liteframe.train.dist import Context

log = logging.getLogger("liteframe.train")


@dataclass
class TrainState:
    """Progress of a job: optimiser steps, data position (epoch, micro-batches into it), samples and tokens
    trained on, samples skipped (counted each time), and the wall-clock seconds spent in the training loop."""

    step: int = 0
    epoch: int = 0
    position: int = 0
    samples: int = 0
    tokens: int = 0
    skipped: int = 0
    elapsed: float = 0.0

    def state_dict(self) -> dict[str, int | float]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, int | float]) -> None:
        for f in fields(self):
            setattr(self, f.name, type(f.default)(state[f.name]))


class RNGState:
    """Every rank's torch CPU (and CUDA) generator state, so a resumed run draws what an uninterrupted one would.
    Saving gathers the ranks' states (a collective); resuming on another rank count keeps the current streams."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"world": self.ctx.world, "cpu": self._gather(torch.get_rng_state())}
        if self.ctx.device.type == "cuda":
            state["cuda"] = self._gather(torch.cuda.get_rng_state(self.ctx.device))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["world"] != self.ctx.world:
            log.warning("resuming a %d-rank checkpoint on %d ranks: the data order changes", state["world"],
                        self.ctx.world)
            return
        # clone: a row of the (world, n) table starts at an offset, which set_rng_state does not honour
        torch.set_rng_state(state["cpu"][self.ctx.rank].clone())
        if self.ctx.device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"][self.ctx.rank].clone(), self.ctx.device)

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's tensor -> every rank's, `(world, ...)` on CPU."""
        if self.ctx.world == 1:
            return t[None]
        local = t.to(self.ctx.device)
        out = [torch.empty_like(local) for _ in range(self.ctx.world)]
        dist.all_gather(out, local)
        return torch.stack(out).cpu()


@dataclass
class RunResult:
    """What a training job left behind: its output folder (the student, or the adapter; None when it stopped
    early), the last step, the last metrics and the signal that stopped it (None: it ran to the end)."""

    output: Path | None
    step: int
    metrics: dict[str, Any]
    signal: int | None = None
