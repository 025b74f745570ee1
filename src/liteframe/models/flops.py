"""FLOP counts for the architecture table, on the meta device (no memory, no compute).

The paper's convention (SPEC 4) counts only the matrix products of parametric layers (Linear, Conv), 2 FLOPs
per multiply-add; `total` adds the attention score and value products."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_aten = torch.ops.aten
_PARAMETRIC = {_aten.mm, _aten.addmm, _aten.convolution}  # what Linear and ConvNd lower to


@dataclass(frozen=True)
class Flops:
    paper: int  # Linear and Conv matmuls only
    total: int  # plus attention (Q K^T and A V)


def count_flops(model: nn.Module, pixels_shape: tuple[int, ...]) -> Flops:
    """FLOPs of one forward of a model built on the meta device, on pixels of `pixels_shape` (B, T, 3, S, S)."""
    pixels = torch.empty(pixels_shape, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(pixels)
    counts = counter.get_flop_counts()["Global"]
    return Flops(paper=sum(n for op, n in counts.items() if op in _PARAMETRIC), total=sum(counts.values()))
