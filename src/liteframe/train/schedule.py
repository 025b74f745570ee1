"""The learning-rate schedule every job uses: linear warm-up, then cosine decay to a floor."""
from __future__ import annotations

import math
from typing import Callable

import torch


def warmup_cosine(lr: float, min_lr: float, warmup: int, steps: int) -> Callable[[int], float]:
    """Step -> factor of `lr`: linear warm-up to 1 over `warmup` steps, then cosine decay to `min_lr / lr` at
    `steps`."""
    floor = min_lr / lr

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def scheduler(optimizer: torch.optim.Optimizer, lr: float, min_lr: float, warmup: int,
              steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """`warmup_cosine` as a stateful scheduler (checkpointed beside the optimiser)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(lr, min_lr, warmup, steps))
