"""The reducer interface: one registry by name, the two stages (grid and set), one input check, shared by every
reducer. The numbers (block, budget) come from `liteframe.compression`."""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch

from liteframe.compression import Compression, get_compression
from liteframe.errors import InputError
from liteframe.grid import TokenGrid, TokenSet
from liteframe.registry import Registry


class Reducer(Protocol):
    """`reducer(grid, compression)` with `compression: Compression | int | None` (None: the default 16x).

    `stage` "grid": acts on the ViT grid before the pixel shuffle and returns a `TokenGrid` pooled by
    `compression.block`. `stage` "set": acts on the pixel-shuffled grid and returns a `TokenSet` of
    `compression.budget(T, H, W)` tokens, each with its grid step and raster position. `needs_attention`: the
    grid must carry the ViT's `scores` and `keys` (`Teacher(pixels, attention=True)`). Either stage decides once,
    on the patches, and applies that decision to the grid's `levels` too. `num_tokens(T, H, W, compression)` is the
    count the reducer returns for a `(T, H, W)` grid (an `InputError` for a grid it cannot reduce)."""

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
    `(B, T/t, C)` the mean of the block's frames' CLS (ours). A grid that is not whole blocks is padded first (SPEC
    3, `pad_to_blocks`).

    The decision is taken once, on the patches: `decide(grid, queries, block)` gets the padded grid and its frames'
    queries and returns what `pool(x, block, decision)` applies to the patches and to each of the grid's levels
    alike (WAP's softmax weights; max's positions, needed only where levels must follow them); reducers without a
    decision (avg, subsample) pool each tensor the same way."""

    stage = "grid"
    needs_attention = False

    def __init__(self, name: str, pool: Callable[[torch.Tensor, tuple, Any], torch.Tensor],
                 decide: Callable[[TokenGrid, torch.Tensor, tuple], Any] | None = None):
        self.name, self.pool, self.decide = name, pool, decide

    def num_tokens(self, t: int, h: int, w: int, compression: Compression | int | None = None) -> int:
        return get_compression(compression).grid_tokens(t, h, w)

    def __call__(self, grid: TokenGrid, compression: Compression | int | None = None) -> TokenGrid:
        block = get_compression(compression).block
        queries = grid.queries if self.decide is not None else None  # of the frames as they are, before padding
        patches, (cls, queries) = pad_to_blocks(grid.patches, [grid.cls, queries], block, self.name)
        levels = tuple(pad_to_blocks(level, [], block)[0] for level in grid.levels)
        padded = TokenGrid(patches, cls, levels=levels)
        decision = self.decide(padded, queries, block) if self.decide is not None else None
        if cls is not None:
            b, t, c = cls.shape
            cls = cls.view(b, t // block[0], block[0], c).mean(2)
        return TokenGrid(self.pool(patches, block, decision), cls,
                         levels=tuple(self.pool(x, block, decision) for x in levels))


class SetReducer:
    """Keeps `compression.budget(T, H, W)` tokens of a grid `(B, T, H, W, C)`: a `TokenSet` in original order.
    `plan(grid, num_tokens)` takes the decision once, as a `Merge` of the grid's tokens, which is applied to the
    patches and to each of the grid's levels alike. `group`: the reducer works on groups of that many steps (ToMe
    merges within a frame, or a clip) and keeps at least one token of each, so a grid it cannot reduce is refused
    when its count is asked, before any video is decoded."""

    stage = "set"

    def __init__(self, name: str, plan: Callable[[TokenGrid, int], Merge], needs_attention: bool = False,
                 group: int | None = None):
        self.name, self.plan, self.needs_attention, self.group = name, plan, needs_attention, group

    def num_tokens(self, t: int, h: int, w: int, compression: Compression | int | None = None) -> int:
        compression = get_compression(compression)
        budget = compression.budget(t, h, w)
        group = self.group
        if group is not None and t % group:
            raise InputError(f"{self.name} merges tokens within clips of {group} grid steps: {t} steps are not "
                             f"whole clips (use a multiple of {group})")
        if group is not None and budget < t // group:
            where = "grid step" if group == 1 else f"clip of {group} grid steps"
            raise InputError(f"{self.name} keeps at least one token per {where}: {t} steps of {h} x {w} tokens at "
                             f"{compression.ratio}x leave {budget} tokens for {t // group}; use fewer or larger "
                             "frames or a weaker compression")
        return budget

    def __call__(self, grid: TokenGrid, compression: Compression | int | None = None) -> TokenSet:
        return self.plan(grid, self.num_tokens(*grid.shape[1:4], compression)).apply(grid.patches, grid.levels)


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

    def apply(self, patches: torch.Tensor, levels: Sequence[torch.Tensor] = ()) -> TokenSet:
        """`(B, T, H, W, C)` and levels of that shape -> `TokenSet (B, N, C)` with each level merged alike,
        computed in float32 or wider, returned in the input's dtype."""
        b, t, h, w, c = patches.shape
        n, m = self.step.shape[1], t * h * w
        dtype = torch.promote_types(self.weight.dtype, torch.promote_types(patches.dtype, torch.float32))
        video = torch.arange(b, device=patches.device)[:, None]
        # One block-diagonal sparse product: reads each input token once per entry without copying the entries'
        # tokens out first, as a gather of `E x C` values would. Levels ride along as further channels.
        index = torch.stack([(self.row + video * n).flatten(), (self.col + video * m).flatten()])
        mix = torch.sparse_coo_tensor(index, self.weight.to(dtype).flatten(), (b * n, b * m), check_invariants=False)
        x = torch.cat([patches, *levels], -1) if levels else patches
        out = torch.sparse.mm(mix, x.reshape(b * m, -1).to(dtype)).view(b, n, -1).to(patches.dtype).split(c, -1)
        return TokenSet(out[0], self.step, self.pos, t, out[1:])


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
    patches: torch.Tensor, per_frame: list[torch.Tensor | None], block: tuple[int, int, int], who: str | None = None
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Pad `patches (B, T, H, W, C)` and each `(B, T, C)` in `per_frame` to whole blocks by repeating the last
    frame, row or column (SPEC 3, extended to space), and say so for `who` (None: quietly, for a grid's levels)."""
    sizes = patches.shape[1:4]
    extra = [-n % b for n, b in zip(sizes, block)]
    if not any(extra):
        return patches, per_frame
    if who is not None:
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
