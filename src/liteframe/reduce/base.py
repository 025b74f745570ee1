"""The reducer interface: one registry by name, the two stages (grid and set), one input check, shared by every
reducer. The numbers (block, budget) come from `liteframe.compression`."""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from liteframe.compression import Compression, get_compression
from liteframe.grid import TokenGrid, TokenSet
from liteframe.registry import Registry


class Reducer(Protocol):
    """`reducer(grid, compression)` with `compression: Compression | int | None` (None: the default 16x).

    `stage` "grid": acts on the ViT grid before the pixel shuffle and returns a `TokenGrid` pooled by
    `compression.block`. `stage` "set": acts on the pixel-shuffled grid and returns a `TokenSet` of
    `compression.budget(T, H, W)` tokens, each with its grid step and raster position. `needs_attention`: the
    grid must carry the ViT's `scores` and `keys` (`Teacher(pixels, attention=True)`).
    `num_tokens(T, H, W, compression)` is the count the reducer returns for a `(T, H, W)` grid."""

    stage: str
    needs_attention: bool

    def num_tokens(self, t: int, h: int, w: int, compression: Compression | int | None = None) -> int: ...

    def __call__(self, grid: TokenGrid, compression: Compression | int | None = None) -> TokenGrid | TokenSet: ...


REDUCERS: Registry[Reducer] = Registry("reducer")


def get_reducer(name: str) -> Reducer:
    """The reducer registered as `name` (`REDUCERS.names()` lists them)."""
    return REDUCERS.get(name)


class GridReducer:
    """Pools the non-overlapping blocks of a `Compression`: `(B, T, H, W, C) -> (B, T/t, H/h, W/w, C)`, CLS
    `(B, T/t, C)` the mean of the block's frames' CLS (ours)."""

    stage = "grid"
    needs_attention = False

    def __init__(self, pool: Callable[[TokenGrid, Compression], torch.Tensor]):
        self.pool = pool

    def num_tokens(self, t: int, h: int, w: int, compression: Compression | int | None = None) -> int:
        return get_compression(compression).grid_tokens(t, h, w)

    def __call__(self, grid: TokenGrid, compression: Compression | int | None = None) -> TokenGrid:
        compression = get_compression(compression)
        patches = self.pool(grid, compression)
        if grid.cls is None:
            return TokenGrid(patches)
        b, t, c = grid.cls.shape
        clip = compression.clip
        cls = _repeat_last(grid.cls, 1, -t % clip).view(b, -1, clip, c).mean(2)
        return TokenGrid(patches, cls)


class SetReducer:
    """Keeps `compression.budget(T, H, W)` tokens of a grid `(B, T, H, W, C)`: a `TokenSet` in original order."""

    stage = "set"

    def __init__(self, reduce: Callable[[TokenGrid, int], TokenSet], needs_attention: bool = False):
        self.reduce = reduce
        self.needs_attention = needs_attention

    def num_tokens(self, t: int, h: int, w: int, compression: Compression | int | None = None) -> int:
        return get_compression(compression).budget(t, h, w)

    def __call__(self, grid: TokenGrid, compression: Compression | int | None = None) -> TokenSet:
        return self.reduce(grid, self.num_tokens(*grid.shape[1:4], compression))


@dataclass
class Merge:
    """A set reducer's decision, taken once, as index and weight tensors (ToMe's "decide, then apply"): of a grid's
    `M = T*H*W` tokens in (time, raster) order, output token `r` of video `b` is the sum of
    `weight[b, e] * token[b, col[b, e]]` over the entries `e` with `row[b, e] == r` (padding entries weigh 0).
    `step`, `pos (B, N)`: each output token's grid step and raster position (`H*W` for a token with no place of
    its own, after its step's patches); the outputs are in that order."""

    step: torch.Tensor  # (B, N)
    pos: torch.Tensor  # (B, N)
    row: torch.Tensor  # (B, E)
    col: torch.Tensor  # (B, E)
    weight: torch.Tensor  # (B, E)

    def apply(self, patches: torch.Tensor) -> TokenSet:
        """`(B, T, H, W, C) -> TokenSet (B, N, C)`, computed in float32 or wider, returned in the input's dtype."""
        b, t, h, w, c = patches.shape
        n, m = self.step.shape[1], t * h * w
        dtype = torch.promote_types(self.weight.dtype, torch.promote_types(patches.dtype, torch.float32))
        video = torch.arange(b, device=patches.device)[:, None]
        # One block-diagonal sparse product: reads each input token once per entry without copying the entries'
        # tokens out first, as a gather of `E x C` values would.
        index = torch.stack([(self.row + video * n).flatten(), (self.col + video * m).flatten()])
        mix = torch.sparse_coo_tensor(index, self.weight.to(dtype).flatten(), (b * n, b * m), check_invariants=False)
        tokens = torch.sparse.mm(mix, patches.reshape(b * m, c).to(dtype)).view(b, n, c)
        return TokenSet(tokens.to(patches.dtype), self.step, self.pos, t)


def frame_budgets(frames: int, total: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """`(T,)` tokens per frame, as even as integers allow and summing to `total`."""
    edges = torch.arange(frames + 1, device=device) * total // frames
    return edges[1:] - edges[:-1]


def frame_budgets_of(grid: TokenGrid, num_tokens: int, who: str) -> torch.Tensor:
    """Check `grid (B, T, H, W, C)` and give the `(T,)` tokens each frame keeps of `num_tokens` (`frame_budgets`):
    the common start of the per-frame set reducers."""
    validate(grid.patches, grid.cls)
    t, h, w = grid.shape[1:4]
    if num_tokens > t * h * w:
        raise ValueError(f"{who} cannot keep {num_tokens} tokens of patches {tuple(grid.shape)}")
    return frame_budgets(t, num_tokens, grid.patches.device)


def attention(grid: TokenGrid, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The ViT's attention a set reducer ranks by: `scores (B, T, H*W)` and `keys (B, T, H*W, Ck)` in float32 or
    wider, with a one-line error where the grid does not carry them."""
    if grid.scores is None or grid.keys is None:
        raise ValueError(f"{who} ranks tokens by the ViT's own CLS attention: the grid {tuple(grid.shape)} carries no "
                         f"scores and keys (ask the teacher for them: Teacher(pixels, attention=True))")
    b, t, h, w = grid.scores.shape
    dtype = torch.promote_types(grid.keys.dtype, torch.float32)
    return grid.scores.reshape(b, t, h * w).to(dtype), grid.keys.reshape(b, t, h * w, -1).to(dtype)


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
