"""Average, max and subsample pooling over the same `Compression` blocks `(t, h, w)` as WAP (the baselines of
BASELINES.md)."""
from __future__ import annotations

import torch

from liteframe.compression import Compression, get_compression
from liteframe.reduce.base import REDUCERS, GridReducer, block_views, pad_to_blocks, validate


def _views(patches: torch.Tensor, compression: Compression | int | tuple | None, who: str) -> list[torch.Tensor]:
    validate(patches)
    block = get_compression(compression).block
    return block_views(pad_to_blocks(patches, [], block, who)[0], block)


def avg_pool(patches: torch.Tensor, compression: Compression | int | tuple | None = None) -> torch.Tensor:
    """`(B, T, H, W, C) -> (B, T/t, H/h, W/w, C)`: the mean of each block (WAP with equal weights)."""
    views = _views(patches, compression, "avg")
    out = views[0].to(torch.promote_types(patches.dtype, torch.float32), copy=True)
    for view in views[1:]:
        out += view
    return out.div_(len(views)).to(patches.dtype)


def max_pool(patches: torch.Tensor, compression: Compression | int | tuple | None = None) -> torch.Tensor:
    """`(B, T, H, W, C) -> (B, T/t, H/h, W/w, C)`: the channel-wise max of each block."""
    views = _views(patches, compression, "max")
    out = views[0].clone()
    for view in views[1:]:
        torch.maximum(out, view, out=out)
    return out


def subsample(patches: torch.Tensor, compression: Compression | int | tuple | None = None) -> torch.Tensor:
    """`(B, T, H, W, C) -> (B, T/t, H/h, W/w, C)`: each block's first frame, top-left token."""
    return _views(patches, compression, "subsample")[0].contiguous()


REDUCERS.register("avg")(GridReducer(lambda grid, compression: avg_pool(grid.patches, compression)))
REDUCERS.register("max")(GridReducer(lambda grid, compression: max_pool(grid.patches, compression)))
REDUCERS.register("subsample")(GridReducer(lambda grid, compression: subsample(grid.patches, compression)))
