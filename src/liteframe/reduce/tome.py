"""ToMe (Bolya et al., 2023) as a post-hoc reducer: bipartite soft matching with size-weighted averages, repeated
down to the budget, frame by frame (`tome`: spatial, as in the original) or over 4-frame clips (`tome-clip`: tokens
of neighbouring frames may merge)."""
from __future__ import annotations

from functools import partial

import torch

from liteframe.grid import TokenGrid, TokenSet
from liteframe.reduce.base import REDUCERS, Merge, SetReducer, frame_budgets, validate


def tome(grid: TokenGrid, num_tokens: int, clip: int = 1) -> TokenSet:
    """`(B, T, H, W, C) -> TokenSet (B, num_tokens, C)` in original order; tokens merge within groups of `clip`
    frames, and the budget is split evenly over the groups. A merged token sits where its surviving (odd-side)
    token sat."""
    return tome_plan(grid, num_tokens, clip).apply(grid.patches, grid.levels)


def tome_plan(grid: TokenGrid, num_tokens: int, clip: int = 1) -> Merge:
    """ToMe's decision as a `Merge`: each output token is the mean of the input tokens merged into it (ToMe's
    size-weighted averages compose to that mean), placed where its survivor sat."""
    patches = grid.patches
    validate(patches, grid.cls)
    b, t, h, w, c = patches.shape
    if t % clip:
        raise ValueError(f"tome over clips of {clip} frames needs T a multiple of {clip}: "
                         f"patches {tuple(patches.shape)}")
    groups = t // clip
    if not groups <= num_tokens <= t * h * w:
        raise ValueError(f"tome keeps between 1 token per group of {clip} frame(s) and all of them; {num_tokens} "
                         f"tokens asked of patches {tuple(patches.shape)}")
    x = patches.reshape(b, groups, clip * h * w, c)  # a group's tokens in (frame, raster) order
    _, size, where, owner = merge_to(x, frame_budgets(groups, num_tokens, patches.device))
    col = torch.arange(t * h * w, device=patches.device).expand(b, -1)
    return Merge(where // (h * w), where % (h * w), owner, col, 1 / size.gather(1, owner))


def merge_to(x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(B, G, n, C)` groups, `keep (G,)` tokens per group (all within one of each other, as `frame_budgets` gives)
    -> tokens `(B, keep.sum(), C)` in original order, their sizes `(B, keep.sum())` (how many input tokens each
    stands for), their flat positions `(B, keep.sum())` in `G * n`, and the output each input token went into
    `(B, G * n)`."""
    b, g, n, c = x.shape
    if keep.max() - keep.min() > 1 or keep.min() < 1 or keep.max() > n:
        raise ValueError(f"tokens kept per group must be in [1, {n}] and within one of each other, got {keep.tolist()}")
    dtype = x.dtype
    size = torch.ones(b, g, n, dtype=torch.promote_types(dtype, torch.float32), device=x.device)
    pos = torch.arange(n, device=x.device).expand(b, g, n)
    owner = pos  # each input token's index among its group's current tokens
    n_in = n
    most = int(keep.max())
    # Each round merges at most half of the tokens, so the rounds (log2(n / keep) of them) must run in turn.
    while n > most:
        x, size, pos, dest = bipartite_merge(x, size, pos, min(n - most, n // 2))
        owner, n = dest.gather(-1, owner), x.shape[2]
    if (keep < n).any():  # the groups that keep one token fewer
        x, size, pos, dest = bipartite_merge(x, size, pos, (n - keep).view(1, g, 1))
        owner, n = dest.gather(-1, owner), x.shape[2]
    # Back to the original order; merged-away tokens (size 0) sort last.
    start = n_in * torch.arange(g, device=x.device)[:, None]
    order = torch.where(size > 0, pos + start, g * n_in).view(b, -1).argsort(-1)
    row = order.argsort(-1)  # each current token's place in that order
    order = order[:, : int(keep.sum())]
    tokens = x.reshape(b, -1, c).gather(1, order[..., None].expand(-1, -1, c))
    owner = row.gather(1, (owner + n * torch.arange(g, device=x.device)[:, None]).view(b, -1))
    return tokens.to(dtype), size.view(b, -1).gather(1, order), (pos + start).view(b, -1).gather(1, order), owner


def bipartite_merge(x: torch.Tensor, size: torch.Tensor, pos: torch.Tensor, r: int | torch.Tensor,
                    metric: torch.Tensor | None = None):
    """One round: in each group the `r` even-position tokens most similar (cosine, of `metric` when given: ToMe
    inside a ViT compares the attention keys, `(B, G, n, d)`) to an odd-position token are averaged into it,
    weighted by size. `x (B, G, n, C)`, `size`, `pos (B, G, n)` -> the same with `n - min(r)`
    tokens, unmerged even ones first, and where each of the `n` tokens went `(B, G, n)` (a merged one: its match);
    where `r` varies by group, the extra merged tokens stay with size 0."""
    b, g, n, c = x.shape
    x = x.to(size.dtype)
    metric = x if metric is None else metric.to(size.dtype)
    norm = torch.linalg.vector_norm(metric, dim=-1)
    # Cosine similarity from the raw product: normalising the tokens would copy all of them.
    sim = metric[..., ::2, :] @ metric[..., 1::2, :].transpose(-1, -2)
    sim = sim / (norm[..., ::2, None] * norm[..., None, 1::2]).clamp_min(torch.finfo(sim.dtype).tiny)
    score, match = sim.max(-1)
    order = score.argsort(-1, descending=True)  # (B, G, n_src), the most similar first
    fewest, most = (r, r) if isinstance(r, int) else (int(r.min()), int(r.max()))
    merged, kept = order[..., :most], order[..., fewest:]
    n_src, n_dst = n - n // 2, n // 2
    now = (torch.arange(most, device=x.device) < r).expand_as(merged)  # merged in this round, by rank
    weight = torch.zeros_like(score).scatter_(-1, merged, now.to(score.dtype)) * size[..., ::2]  # 0: not merged
    dst_size = size[..., 1::2].scatter_add(-1, match, weight)
    # New odd token = (its size x itself + merged sizes x tokens) / new size, as one batched product with a sparse
    # (n_dst, n_src) matrix: whole rows at matmul speed, where scatter and gather go element by element.
    share = (weight / dst_size.gather(-1, match))[..., None, :]
    mix = sim.new_zeros(b, g, n_dst, n_src).scatter_(-2, match[..., None, :], share).view(b * g, n_dst, n_src)
    dst = (x[..., 1::2, :] * (size[..., 1::2] / dst_size)[..., None]).view(b * g, n_dst, c)
    dst = torch.baddbmm(dst, mix, x[..., ::2, :].reshape(b * g, n_src, c))
    src = x[..., ::2, :].gather(-2, kept[..., None].expand(-1, -1, -1, c))
    out = torch.cat([src, dst.view(b, g, n_dst, c)], -2)

    kept_size = size[..., ::2].gather(-1, kept)
    kept_size[..., : most - fewest] *= torch.arange(fewest, most, device=x.device) >= r  # merged in this round
    new_size = torch.cat([kept_size, dst_size], -1)
    new_pos = torch.cat([pos[..., ::2].gather(-1, kept), pos[..., 1::2]], -1)
    dest = torch.empty_like(pos)
    rank = order.argsort(-1)  # each even token's place in `order`
    dest[..., ::2] = torch.where(rank < r, n_src - fewest + match, rank - fewest)
    dest[..., 1::2] = n_src - fewest + torch.arange(n_dst, device=x.device)
    return out, new_size, new_pos, dest


REDUCERS.register("tome")(SetReducer("tome", tome_plan, group=1))
REDUCERS.register("tome-clip")(SetReducer("tome-clip", partial(tome_plan, clip=4), group=4))
