"""WAP, weighted average pooling (SPEC 3): each block's tokens averaged with softmax weights from a per-frame query."""
from __future__ import annotations

import math

import torch

from liteframe.compression import Compression, get_compression
from liteframe.grid import TokenGrid
from liteframe.reduce.base import REDUCERS, GridReducer, block_views, check_finite, pad_to_blocks, validate


def wap(patches: torch.Tensor, queries: torch.Tensor, compression: Compression | int | tuple | None = None,
        check: bool = True) -> torch.Tensor:
    """`(B, T, H, W, C), (B, T, C) -> (B, T/t, H/h, W/w, C)` over the blocks `(t, h, w)` of `compression`; a grid
    that is not whole blocks is padded (SPEC 3). `check`: raise on non-finite scores, which costs a host sync on
    a GPU (hot paths such as the student's and the distillation targets' pass False)."""
    validate(patches, queries, check_values=False)  # the output checks the values almost for free
    block = get_compression(compression).block
    patches, (queries,) = pad_to_blocks(patches, [queries], block, "wap")
    out = weighted_sum(patches, wap_weights(patches, queries, block), block)
    # Any NaN or inf in the patches reaches the output (as itself, through a non-finite score, or as inf x 0), so
    # the small output is checked, with the smaller queries (an infinite query can score a frame's patches -inf,
    # which only zeroes their weights), in one host sync; the patches only to name the culprit.
    if check and not (torch.isfinite(out).all() & torch.isfinite(queries).all()):
        check_finite(patches, queries)
        raise ValueError(f"WAP scores overflow for patches {tuple(patches.shape)} and queries {tuple(queries.shape)}")
    return out


def wap_stacked(grid: TokenGrid, block: tuple[int, int, int]) -> torch.Tensor:
    """`TokenGrid (B, T, H, W, C)` with L levels -> `(B, (1+L)*T/t, H/h, W/w, C)`: WAP of the patches with the
    frames' queries, then each level pooled with the same weights (`TokenGrid.stacked` order), as the registered
    `wap` reducer pools them. Unchecked, as `wap(check=False)`: for CTD's targets and tokens."""
    patches, (queries,) = pad_to_blocks(grid.patches, [grid.queries], block, "wap")
    weights = wap_weights(patches, queries, block)
    levels = (pad_to_blocks(level, [], block)[0] for level in grid.levels)
    return torch.cat([weighted_sum(x, weights, block) for x in (patches, *levels)], dim=1)


def wap_weights(patches: torch.Tensor, queries: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """`(B, T, H, W, C), (B, T, C) -> (B, T/t, H/h, W/w, t*h*w)` softmax weights per block, in float32 or wider
    whatever the surrounding autocast; T, H, W must be multiples of the block."""
    b, tt, hh, ww, c = patches.shape
    t, h, w = block
    dtype = torch.promote_types(patches.dtype, torch.float32)  # bf16 scores would round the softmax's logits
    # Autocast would run the einsum (a bmm) in bf16 and round the distillation targets differently from the
    # held-out ones computed outside it. (Autocast knows no meta device, where FLOPs are counted.)
    with torch.autocast("cpu" if patches.is_meta else patches.device.type, enabled=False):
        scores = torch.einsum("bthwc,btc->bthw", patches.to(dtype), queries.to(dtype) / math.sqrt(c))
        scores = scores.view(b, tt // t, t, hh // h, h, ww // w, w).permute(0, 1, 3, 5, 2, 4, 6)
        return scores.reshape(b, tt // t, hh // h, ww // w, t * h * w).softmax(-1)


def weighted_sum(x: torch.Tensor, weights: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """`(B, T, H, W, C)` in whole blocks, `(B, T/t, H/h, W/w, t*h*w)` weights -> each block's weighted sum
    `(B, T/t, H/h, W/w, C)`, accumulated in the weights' dtype, returned in `x`'s."""
    b, tt, hh, ww, c = x.shape
    t, h, w = block
    out = torch.zeros((b, tt // t, hh // h, ww // w, c), dtype=weights.dtype, device=x.device)
    for k, view in enumerate(block_views(x, block)):
        out.addcmul_(view, weights[..., k, None])
    return out.to(x.dtype)


def _weights(grid: TokenGrid, queries: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """The registered reducer's decision: the WAP weights of the patches' blocks."""
    validate(grid.patches, queries, check_values=False)
    return wap_weights(grid.patches, queries, block)


def _pool(x: torch.Tensor, block: tuple[int, int, int], weights: torch.Tensor) -> torch.Tensor:
    out = weighted_sum(x, weights, block)
    if not torch.isfinite(out).all():  # as `wap` checks: non-finite patches or overflowing scores
        check_finite(x)
        raise ValueError(f"WAP scores overflow for a grid {tuple(x.shape)}")
    return out


REDUCERS.register("wap")(GridReducer("wap", _pool, _weights))
