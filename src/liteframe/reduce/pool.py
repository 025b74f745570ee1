"""Average, max and subsample pooling over the same `(t, h, w)` blocks as WAP (the baselines of BASELINES.md)."""
from __future__ import annotations

import torch

from liteframe.reduce.base import REDUCERS, GridReducer, block_views, pad_to_blocks, validate


def _padded(patches: torch.Tensor, block: tuple[int, int, int], who: str) -> torch.Tensor:
    validate(patches)
    return pad_to_blocks(patches, [], block, who)[0]


def avg_pool(patches: torch.Tensor, block: tuple[int, int, int] = (4, 2, 2)) -> torch.Tensor:
    """`(B, T, H, W, C) -> (B, T/t, H/h, W/w, C)`: the mean of each block (WAP with equal weights)."""
    views = block_views(_padded(patches, block, "avg"), block)
    out = views[0].to(torch.promote_types(patches.dtype, torch.float32), copy=True)
    for view in views[1:]:
        out += view
    return out.div_(len(views)).to(patches.dtype)


def max_pool(patches: torch.Tensor, block: tuple[int, int, int] = (4, 2, 2)) -> torch.Tensor:
    """`(B, T, H, W, C) -> (B, T/t, H/h, W/w, C)`: the channel-wise max of each block."""
    views = block_views(_padded(patches, block, "max"), block)
    out = views[0].clone()
    for view in views[1:]:
        torch.maximum(out, view, out=out)
    return out


def subsample(patches: torch.Tensor, block: tuple[int, int, int] = (4, 2, 2)) -> torch.Tensor:
    """`(B, T, H, W, C) -> (B, T/t, H/h, W/w, C)`: each block's first frame, top-left token."""
    return block_views(_padded(patches, block, "subsample"), block)[0].contiguous()


REDUCERS.register("avg")(GridReducer(lambda grid, block: avg_pool(grid.patches, block)))
REDUCERS.register("max")(GridReducer(lambda grid, block: max_pool(grid.patches, block)))
REDUCERS.register("subsample")(GridReducer(lambda grid, block: subsample(grid.patches, block)))
