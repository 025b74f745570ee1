"""Reducers over a grid with DeepStack levels: the decision is taken once, on the final merged tokens, and applied
to the tokens and to every level alike, so that the features the LLM adds at a visual position stay those of the
token there.

Grid stage (on the `(T, H, W)` merged grid, before any pixel shuffle; Qwen has none):
- `wap`: the WAP weights of each block, from the final tokens and their step's query, weigh the levels' blocks too.
- `avg`, `subsample`: decision-free; each level is pooled the same way.
- `max`: the decision is, per block and channel, which token holds the max of the final tokens; each level takes
  its value at that token (a level's own max would mix tokens across channels differently).
Set stage: PruMerge and FastVID already decide first (`prumerge_plan`, `fastvid_plan` return a `Merge`); ToMe's
decision is recovered as a `Merge` by `tome_plan`, which runs ToMe's own rounds (`bipartite_merge`) and follows
where each input token goes. The same `Merge` is applied to the tokens and to each level.

At integration the levels should ride on `TokenGrid`/`TokenSet` (a `levels` field that the encoder's chunk
concatenation, the grid reducers and `Merge.apply` carry along), and ToMe should return its `Merge` like PruMerge and
FastVID (then `tome_plan` and its copy of ToMe's matching go).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from liteframe.compression import Compression, get_compression
from liteframe.grid import TokenGrid, TokenSet
from liteframe.llm.encoders import VisualTokens
from liteframe.llm.qwen3.vision import DeepStackGrid
from liteframe.reduce import REDUCERS, Merge, avg_pool, subsample, wap_weights
from liteframe.reduce.base import block_views, frame_budgets, pad_to_blocks, validate
from liteframe.reduce.fastvid import fastvid_plan
from liteframe.reduce.prumerge import prumerge_plan
from liteframe.reduce.tome import bipartite_merge


@dataclass
class DeepStackSet:
    """A set reducer's output with DeepStack levels: `tokens` as the reducer gives them, each level's tokens
    `(B, N, D)` in the same order, and the `(T, H, W)` grid they were kept from."""

    tokens: TokenSet
    levels: list[torch.Tensor]
    grid: tuple[int, int, int]


def reduce_grid(name: str, stack: DeepStackGrid, compression: Compression | int | None = None) -> DeepStackGrid:
    """A grid reducer (`wap`, `avg`, `max`, `subsample`) on the final tokens and every level:
    `(B, T, H, W, D)` grids -> `(B, T/t, H/h, W/w, D)` grids, blocks of `compression`."""
    compression = get_compression(compression)
    if REDUCERS.get(name).stage != "grid":
        raise ValueError(f"{name} is not a grid reducer")
    b = stack.grid.shape[0]
    grids = torch.cat([stack.grid.patches, *stack.levels])  # final tokens and levels as one batch
    if name in ("avg", "subsample"):
        pooled = (avg_pool if name == "avg" else subsample)(grids, compression)
    else:
        block = compression.block
        queries = stack.grid.queries
        validate(stack.grid.patches, queries)
        grids, _ = pad_to_blocks(grids, [], block, name)
        main, (queries,) = pad_to_blocks(stack.grid.patches, [queries], block, name)
        pooled = _wap(grids, wap_weights(main, queries, block), block) if name == "wap" else _max(grids, main, block)
    parts = pooled.split(b)
    return DeepStackGrid(TokenGrid(parts[0]), list(parts[1:]))


def reduce_set(name: str, stack: DeepStackGrid, compression: Compression | int | None = None) -> DeepStackSet:
    """A set reducer (`tome`, `tome-clip`, `prumerge`, `fastvid`) decided on the final tokens (and the scores and
    keys they carry) and applied to them and to every level: `(B, T, H, W, D)` grids -> `DeepStackSet` of
    `compression.budget(T, H, W)` tokens."""
    if name not in PLANS:
        raise ValueError(f"{name} is not a set reducer ({', '.join(PLANS)})")
    plan = PLANS[name](stack.grid, REDUCERS.get(name).num_tokens(*stack.grid.shape[1:4], compression))
    return DeepStackSet(plan.apply(stack.grid.patches), [plan.apply(level).tokens for level in stack.levels],
                        tuple(stack.grid.shape[1:4]))


def visual_tokens(out: DeepStackGrid | DeepStackSet, step_frames: int) -> tuple[VisualTokens, list[torch.Tensor]]:
    """A (reduced) grid or a set reducer's output of one video -> the `VisualTokens` the prompt and positions read
    (tokens `(1, N, D)` in time-then-raster order, counts per step, each token's step and raster position) and the
    levels' tokens `(1, N, D)` in the same order; a step covers `step_frames` frames. The pipeline's projector is
    the identity for Qwen (the merger is part of the tower), so the tokens are the LLM's."""
    if isinstance(out, DeepStackSet):
        kept = out.tokens
        return VisualTokens(kept.tokens, kept.counts()[0].tolist(), step_frames, kept.frame[0], kept.pos[0],
                            out.grid), out.levels
    t, h, w = out.grid.shape[1:4]
    index = torch.arange(t * h * w, device=out.grid.patches.device)
    return (VisualTokens(out.grid.tokens(), [h * w] * t, step_frames, index // (h * w), index % (h * w), (t, h, w)),
            [level.flatten(1, 3) for level in out.levels])


def _wap(grids: torch.Tensor, weights: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """`(K*B, T, H, W, D)` grids in whole blocks, `(B, T/t, H/h, W/w, t*h*w)` weights -> each grid's weighted block
    sums, in the grids' dtype (WAP's own accumulation: one `addcmul` per position in the block)."""
    k = grids.shape[0] // weights.shape[0]
    weights = weights.repeat(k, 1, 1, 1, 1)
    views = block_views(grids, block)
    out = torch.zeros(views[0].shape, dtype=weights.dtype, device=grids.device)
    for i, view in enumerate(views):
        out.addcmul_(view, weights[..., i, None])
    return out.to(grids.dtype)


def _max(grids: torch.Tensor, main: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """`(K*B, T, H, W, D)` grids whose first B are `main` -> each grid's value, per block and channel, at the
    position where `main` holds that block's max."""
    k = grids.shape[0] // main.shape[0]
    where = torch.stack(block_views(main, block)).argmax(0).repeat(k, 1, 1, 1, 1)  # first max, as max_pool keeps
    return torch.stack(block_views(grids, block)).gather(0, where[None])[0]


def tome_plan(grid: TokenGrid, num_tokens: int, clip: int = 1) -> Merge:
    """ToMe's decision (`liteframe.reduce.tome.tome`, groups of `clip` frames) as a `Merge`: each output token is
    the mean of the input tokens merged into it (ToMe's size-weighted averages compose to that mean), placed where
    ToMe places it. The rounds are ToMe's own (`bipartite_merge`); each round's matching is recomputed here to follow
    the tokens (`_match`, the same arithmetic as `bipartite_merge`)."""
    patches = grid.patches
    validate(patches, grid.cls)
    b, t, h, w, c = patches.shape
    if t % clip:
        raise ValueError(f"tome over clips of {clip} frames needs T a multiple of {clip}: "
                         f"patches {tuple(patches.shape)}")
    g, n_in = t // clip, clip * h * w
    if not g <= num_tokens <= t * h * w:
        raise ValueError(f"tome keeps between 1 token per group and all of them; {num_tokens} asked of "
                         f"{tuple(patches.shape)}")
    keep = frame_budgets(g, num_tokens, patches.device)
    x = patches.reshape(b, g, n_in, c)
    size = torch.ones(b, g, n_in, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
    pos = torch.arange(n_in, device=x.device).expand(b, g, n_in)
    owner = pos.clone()  # each input token's index among the current tokens of its group
    n, most = n_in, int(keep.max())
    rounds = []
    while n > most:
        rounds.append(min(n - most, n // 2))
        n -= rounds[-1]
    for r in rounds + ([(n - keep).view(1, g, 1)] if (keep < n).any() else []):
        owner = _follow(x, size, r).gather(-1, owner)
        x, size, pos = bipartite_merge(x, size, pos, r)
    # ToMe's output order (`merge_to`): surviving tokens by original position, merged-away ones (size 0) last.
    start = n_in * torch.arange(g, device=x.device)[:, None]
    order = torch.where(size > 0, pos + start, g * n_in).view(b, -1).argsort(-1)[:, :int(keep.sum())]
    where = (pos + start).view(b, -1).gather(1, order)
    row_of = torch.full((b, g * x.shape[2]), -1, dtype=torch.long, device=x.device)
    row_of.scatter_(1, order, torch.arange(order.shape[1], device=x.device).expand(b, -1))
    row = row_of.gather(1, (owner + torch.arange(g, device=x.device)[:, None] * x.shape[2]).view(b, -1))
    weight = 1 / size.view(b, -1).gather(1, order).gather(1, row)
    col = torch.arange(t * h * w, device=x.device).expand(b, -1)
    return Merge(where // (h * w), where % (h * w), row, col, weight)


def _match(x: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`bipartite_merge`'s matching: each even token's most cosine-similar odd token `(B, G, n_src)` and the even
    tokens by decreasing similarity `(B, G, n_src)`."""
    x = x.to(size.dtype)
    norm = torch.linalg.vector_norm(x, dim=-1)
    sim = x[..., ::2, :] @ x[..., 1::2, :].transpose(-1, -2)
    sim = sim / (norm[..., ::2, None] * norm[..., None, 1::2]).clamp_min(torch.finfo(sim.dtype).tiny)
    score, match = sim.max(-1)
    return match, score.argsort(-1, descending=True)


def _follow(x: torch.Tensor, size: torch.Tensor, r: int | torch.Tensor) -> torch.Tensor:
    """Where each of the `n` current tokens `(B, G, n)` sits after a `bipartite_merge` round of `r`: the even tokens
    it keeps first (in its order), then the odd ones; a merged even token goes where its odd match goes."""
    match, order = _match(x, size)
    n = x.shape[2]
    n_src, n_dst = n - n // 2, n // 2
    fewest = r if isinstance(r, int) else int(r.min())
    rank = order.argsort(-1)  # each even token's place in the order
    new = torch.empty_like(x[..., 0], dtype=torch.long)
    new[..., ::2] = torch.where(rank < r, n_src - fewest + match, rank - fewest)
    new[..., 1::2] = n_src - fewest + torch.arange(n_dst, device=x.device)
    return new

PLANS = {
    "tome": tome_plan,
    "tome-clip": partial(tome_plan, clip=4),
    "prumerge": prumerge_plan,
    "fastvid": fastvid_plan,
}
