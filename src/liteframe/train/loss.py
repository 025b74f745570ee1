"""The distillation losses: CTD (compressed student tokens against WAP(teacher)) and the RTD ablation's decoder."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def clip_outliers(target: torch.Tensor, sigma: float) -> torch.Tensor:
    """`(B, N, C) -> (B, N, C)`: clamp each value to mean +- sigma * std of its channel within its clip (SPEC 5).

    Statistics are per clip, so a clip's clipped target does not depend on which other clips share its batch
    (a batch split over ranks or accumulation steps gives the same targets)."""
    if sigma <= 0:
        return target
    target = target.float()
    mean = target.mean(dim=1, keepdim=True)
    std = target.std(dim=1, keepdim=True, correction=0)
    return torch.clamp(target, mean - sigma * std, mean + sigma * std)


def ctd_loss(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0, cosine_weight: float = 1.0,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, N, C), (B, N, C)` -> (loss, mean cosine): smooth-L1 per value plus `cosine_weight * (1 - cos)` per token.

    Both terms are means over the batch's tokens; the cosine is also the quality metric (detached)."""
    pred, target = pred.float(), target.float()
    cos = F.cosine_similarity(pred, target, dim=-1)
    loss = F.smooth_l1_loss(pred, target, beta=beta) + cosine_weight * (1 - cos).mean()
    return loss, cos.detach().mean()


class RTDDecoder(nn.Module):
    """The RTD ablation's auxiliary decoder: each compressed token predicts the dense teacher tokens of its block.

    `(B, T/t, H/h, W/w, C) -> (B, T, H, W, C)` by a per-token MLP to `t*h*w*C` values and a depth-to-space."""

    def __init__(self, dim: int, block: tuple[int, int, int]):
        super().__init__()
        self.block = tuple(block)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, math.prod(block) * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h, w, c = x.shape
        bt, bh, bw = self.block
        x = self.fc2(F.gelu(self.fc1(self.norm(x))))
        x = x.view(b, t, h, w, bt, bh, bw, c).permute(0, 1, 4, 2, 5, 3, 6, 7)
        return x.reshape(b, t * bt, h * bh, w * bw, c)

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """AdamW parameter groups: weight decay on the matrices, none on biases and the norm."""
        params = list(self.parameters())
        return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
