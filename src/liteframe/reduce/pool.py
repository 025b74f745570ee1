"""Average, max and subsample pooling over the same `Compression` blocks `(t, h, w)` as WAP (the baselines of
BASELINES.md)."""
from __future__ import annotations

import torch

from liteframe.compression import Compression, get_compression
from liteframe.grid import TokenGrid
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


def max_positions(grid: TokenGrid, queries: torch.Tensor | None, block: tuple[int, int, int]) -> torch.Tensor | None:
    """Max's decision where levels must follow it: `(B, T/t, H/h, W/w, C)`, per block and channel the position in
    the block (`block_views` order) of the patches' max, the first one on ties; None without levels (the max alone
    needs no positions)."""
    if not grid.levels:
        return None
    validate(grid.patches)
    return torch.stack(block_views(grid.patches, block)).argmax(0)


def _max(x: torch.Tensor, block: tuple[int, int, int], where: torch.Tensor | None) -> torch.Tensor:
    """Each block's value at the patches' max (`max_positions`), or without positions its own max."""
    if where is None:
        return max_pool(x, block)
    return torch.stack(block_views(x, block)).gather(0, where[None])[0]


REDUCERS.register("avg")(GridReducer("avg", lambda x, block, _: avg_pool(x, block)))
REDUCERS.register("max")(GridReducer("max", _max, max_positions))
REDUCERS.register("subsample")(GridReducer("subsample", lambda x, block, _: subsample(x, block)))
