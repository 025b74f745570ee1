"""The reducer interface: one registry by name, one input check, one budget rule, shared by every reducer."""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Callable, Protocol

import torch

from liteframe.grid import TokenGrid
from liteframe.registry import Registry


class Reducer(Protocol):
    """`reducer(grid, compression=16)`: a `TokenGrid` with `1/compression` of its patch tokens (`keeps_grid`), or
    tokens `(B, N, C)` in their original (time, then raster) order, `N = reducer.num_tokens(T, H, W, compression)`."""

    keeps_grid: bool

    def num_tokens(self, t: int, h: int, w: int, compression: int = 16) -> int: ...

    def __call__(self, grid: TokenGrid, compression: int = 16) -> TokenGrid | torch.Tensor: ...


REDUCERS: Registry[Reducer] = Registry("reducer")


def get_reducer(name: str) -> Reducer:
    """The reducer registered as `name` (`REDUCERS.names()` lists them)."""
    return REDUCERS.get(name)


class GridReducer:
    """Pools non-overlapping `(t, h, w)` blocks: `(B, T, H, W, C) -> (B, T/t, H/h, W/w, C)`, CLS `(B, T/t, C)` the
    mean of the block's frames' CLS (ours)."""

    keeps_grid = True

    def __init__(self, pool: Callable[[TokenGrid, tuple[int, int, int]], torch.Tensor]):
        self.pool = pool

    def num_tokens(self, t: int, h: int, w: int, compression: int = 16) -> int:
        bt, bh, bw = block_for(compression)
        return math.ceil(t / bt) * math.ceil(h / bh) * math.ceil(w / bw)

    def __call__(self, grid: TokenGrid, compression: int = 16) -> TokenGrid:
        block = block_for(compression)
        patches = self.pool(grid, block)
        if grid.cls is None:
            return TokenGrid(patches)
        b, t, c = grid.cls.shape
        cls = _repeat_last(grid.cls, 1, -t % block[0]).view(b, -1, block[0], c).mean(2)
        return TokenGrid(patches, cls)


class SetReducer:
    """Keeps `budget(T, H, W, compression)` tokens per video: `(B, T, H, W, C) -> (B, N, C)` in original order."""

    keeps_grid = False

    def __init__(self, reduce: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]):
        self.reduce = reduce

    def num_tokens(self, t: int, h: int, w: int, compression: int = 16) -> int:
        return budget(t, h, w, compression)

    def __call__(self, grid: TokenGrid, compression: int = 16) -> torch.Tensor:
        return self.reduce(grid.patches, grid.queries, self.num_tokens(*grid.shape[1:4], compression))


def block_for(compression: int) -> tuple[int, int, int]:
    """Block `(t, h, w)` of a grid reducer: 2 x 2 in space and the rest in time, so 16 -> (4, 2, 2) (SPEC 3);
    a compression that is not a multiple of 4 is all temporal (ours)."""
    check_compression(compression)
    return (compression // 4, 2, 2) if compression % 4 == 0 else (compression, 1, 1)


def budget(t: int, h: int, w: int, compression: int) -> int:
    """Tokens a set reducer keeps per video: `ceil(T * H * W / compression)`, equal to a grid reducer's count
    whenever the grid divides into whole blocks."""
    check_compression(compression)
    return math.ceil(t * h * w / compression)


def check_compression(compression: int) -> None:
    if isinstance(compression, bool) or not isinstance(compression, int) or compression < 1:
        raise ValueError(f"compression must be a positive integer, got {compression!r}")


def frame_budgets(frames: int, total: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """`(T,)` tokens per frame, as even as integers allow and summing to `total`."""
    edges = torch.arange(frames + 1, device=device) * total // frames
    return edges[1:] - edges[:-1]


def frame_tokens(
    patches: torch.Tensor, queries: torch.Tensor, num_tokens: int, who: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(B, T, H, W, C), (B, T, C) -> (B, T, H*W, C), (B, T, C)` in float32 or wider, and the `(T,)` tokens each
    frame keeps of `num_tokens` (`frame_budgets`): the common start of the per-frame set reducers."""
    validate(patches, queries)
    b, t, h, w, c = patches.shape
    if num_tokens > t * h * w:
        raise ValueError(f"{who} cannot keep {num_tokens} tokens of patches {tuple(patches.shape)}")
    dtype = torch.promote_types(patches.dtype, torch.float32)  # bf16 would round the scores that rank tokens
    x = patches.reshape(b, t, h * w, c).to(dtype)
    return x, queries.to(dtype), frame_budgets(t, num_tokens, patches.device)


def validate(patches: torch.Tensor, queries: torch.Tensor | None = None, check_values: bool = True) -> None:
    """Raise `ValueError` naming the shapes unless `patches (B, T, H, W, C)` and `queries (B, T, C)` agree, are
    non-empty floats and (with `check_values`) finite."""
    shapes = f"patches {tuple(patches.shape)}" + ("" if queries is None else f", queries {tuple(queries.shape)}")
    if patches.ndim != 5 or (queries is not None and queries.ndim != 3):
        raise ValueError(f"expected patches (B, T, H, W, C) and queries (B, T, C), got {shapes}")
    if queries is not None and (patches.shape[:2] != queries.shape[:2] or patches.shape[-1] != queries.shape[-1]):
        raise ValueError(f"batch, frame or channel sizes of patches and queries differ: {shapes}")
    if patches.numel() == 0:
        raise ValueError(f"empty input: {shapes}")
    if not patches.is_floating_point() or (queries is not None and not queries.is_floating_point()):
        raise ValueError(f"expected floating-point tensors: {shapes}")
    if check_values:
        check_finite(patches, queries)


def check_finite(patches: torch.Tensor, queries: torch.Tensor | None = None) -> None:
    # A sum is non-finite whenever any term is, and costs far less than materialising `isfinite`; only a sum
    # that overflows with finite terms needs the exact check.
    for name, x in (("patches", patches), ("queries", queries)):
        if x is not None and not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
            raise ValueError(f"{name} {tuple(x.shape)} contain NaN or infinite values")


def block_views(patches: torch.Tensor, block: tuple[int, int, int]) -> list[torch.Tensor]:
    """`(B, T, H, W, C)` in whole blocks -> the `t*h*w` strided views `(B, T/t, H/h, W/w, C)`, one per position
    inside the block, in (dt, dh, dw) order. Reducing over them in turn reads every token once; reducing the 8-d
    block view in one call makes torch permute (copy) the whole input first, and measured 4x slower on CPU."""
    t, h, w = block
    return [patches[:, dt::t, dh::h, dw::w] for dt, dh, dw in itertools.product(range(t), range(h), range(w))]


def pad_to_blocks(
    patches: torch.Tensor, per_frame: list[torch.Tensor | None], block: tuple[int, int, int], who: str
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Pad `patches (B, T, H, W, C)` and each `(B, T, C)` in `per_frame` to whole blocks by repeating the last
    frame, row or column (SPEC 3, extended to space), and say so."""
    sizes = patches.shape[1:4]
    extra = [-n % b for n, b in zip(sizes, block)]
    if not any(extra):
        return patches, per_frame
    warnings.warn(
        f"{who}: grid (T, H, W) = {tuple(sizes)} is not a multiple of the block {block}; padding by repeating "
        f"the last frame/row/column to {tuple(n + e for n, e in zip(sizes, extra))}",
        stacklevel=3,
    )
    for dim, e in zip((1, 2, 3), extra):
        patches = _repeat_last(patches, dim, e)
    return patches, [None if x is None else _repeat_last(x, 1, extra[0]) for x in per_frame]


def _repeat_last(x: torch.Tensor, dim: int, extra: int) -> torch.Tensor:
    if not extra:
        return x
    last = x.narrow(dim, x.shape[dim] - 1, 1)
    return torch.cat([x, last.expand(*x.shape[:dim], extra, *x.shape[dim + 1:])], dim)
