"""WAP, weighted average pooling (SPEC 3): each block's tokens averaged with softmax weights from a per-frame query."""
from __future__ import annotations

import math

import torch

from liteframe.reduce.base import REDUCERS, GridReducer, block_views, check_finite, pad_to_blocks, validate


def wap(patches: torch.Tensor, queries: torch.Tensor, block: tuple[int, int, int] = (4, 2, 2)) -> torch.Tensor:
    """`(B, T, H, W, C), (B, T, C) -> (B, T/t, H/h, W/w, C)`; a grid that is not whole blocks is padded (SPEC 3)."""
    validate(patches, queries, check_values=False)  # the scores check the values for free
    patches, (queries,) = pad_to_blocks(patches, [queries], block, "wap")
    weights = wap_weights(patches, queries, block)
    b, tt, hh, ww, c = patches.shape
    t, h, w = block
    out = torch.zeros((b, tt // t, hh // h, ww // w, c), dtype=weights.dtype, device=patches.device)
    for k, view in enumerate(block_views(patches, block)):
        out.addcmul_(view, weights[..., k, None])
    return out.to(patches.dtype)


def wap_weights(patches: torch.Tensor, queries: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """`(B, T, H, W, C), (B, T, C) -> (B, T/t, H/h, W/w, t*h*w)` softmax weights per block, in float32 or wider;
    T, H, W must be multiples of the block."""
    b, tt, hh, ww, c = patches.shape
    t, h, w = block
    dtype = torch.promote_types(patches.dtype, torch.float32)  # bf16 scores would round the softmax's logits
    scores = torch.einsum("bthwc,btc->bthw", patches.to(dtype), queries.to(dtype) / math.sqrt(c))
    if not torch.isfinite(scores).all():
        check_finite(patches, queries)
        raise ValueError(f"WAP scores overflow for patches {tuple(patches.shape)} and queries {tuple(queries.shape)}")
    scores = scores.view(b, tt // t, t, hh // h, h, ww // w, w).permute(0, 1, 3, 5, 2, 4, 6)
    return scores.reshape(b, tt // t, hh // h, ww // w, t * h * w).softmax(-1)


REDUCERS.register("wap")(GridReducer(lambda grid, block: wap(grid.patches, grid.queries, block)))
