"""LLaVA-PruMerge (Shang et al., 2024) as its public code computes it, the PruMerge+ variant, frame by frame
(BASELINES): keep the tokens whose CLS attention is an outlier (above Q3 + 1.5 IQR), top up with spatially
uniform positions, add to each kept token the attention-weighted sum of its 32 nearest tokens by key similarity,
and add one token that sums the pruned ones weighted by attention.

InternVL3 adaptations (ours): it runs on the pixel-shuffled grid (the set stage, before the projector), where a
token is 2 x 2 patches: its score is the sum of their CLS attention and its key their concatenated keys
(`TokenGrid.pixel_shuffle`). The common budget: each frame keeps `frame_budgets` tokens, the extra token among
them, so the outliers are capped at the budget (the most attended first) and the uniform top-up fills the rest
in a coarse-to-fine lattice order (`spread_order`) instead of the reference's fixed stride."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from liteframe.grid import TokenGrid, TokenSet
from liteframe.reduce.base import REDUCERS, Merge, SetReducer, attention, frame_budgets_of

NEIGHBOURS = 32  # k of the key-similarity neighbours merged into each kept token


def prumerge(grid: TokenGrid, num_tokens: int) -> TokenSet:
    """`(B, T, H, W, C)` with scores and keys -> `TokenSet (B, num_tokens, C)` in original order, each frame's
    extra token last in its frame (at position `H*W`)."""
    return prumerge_plan(grid, num_tokens).apply(grid.patches, grid.levels)


def prumerge_plan(grid: TokenGrid, num_tokens: int) -> Merge:
    """Decide which tokens survive and what each output sums: a `Merge` of `num_tokens` outputs."""
    keep = frame_budgets_of(grid, num_tokens, "prumerge")
    score, keys = attention(grid, "prumerge")
    b, t, h, w = grid.shape[:4]
    n = h * w
    kept = (keep - 1).clamp_min(0)  # per frame, besides the extra token
    slots = int(kept.max())
    index = priority(score, h, w).topk(slots, dim=-1).indices  # (B, T, S)
    valid = (torch.arange(slots, device=score.device) < kept[:, None]).expand_as(index)
    index = index.gather(-1, torch.where(valid, index, n + index).argsort(-1))  # used slots first, raster order

    unit = F.normalize(keys, dim=-1)
    sim = unit.gather(2, index[..., None].expand(-1, -1, -1, unit.shape[-1])) @ unit.transpose(-1, -2)  # (B,T,S,n)
    near = sim.scatter_(-1, index[..., None], -torch.inf).topk(min(NEIGHBOURS, n - 1), dim=-1).indices
    cols = torch.cat([index[..., None], near], -1)  # (B, T, S, 1 + k): the token, then its neighbours
    weights = torch.cat([torch.ones_like(index[..., None], dtype=score.dtype), score.gather(-1, near.flatten(2))
                         .view(near.shape)], -1) * valid[..., None]
    pruned = torch.ones_like(score, dtype=torch.bool).scatter_(-1, index, ~valid)
    extra = score * pruned * (keep >= 1)[:, None]  # (B, T, n): the extra token's weights

    # Output rows: a frame's kept tokens in raster order, then its extra token.
    present = torch.cat([valid, (keep >= 1)[:, None].expand(b, t, 1)], -1)  # (B, T, S + 1)
    row = (present.flatten(1).cumsum(-1) - 1).clamp_min(0).view(b, t, slots + 1)
    offset = torch.arange(t, device=score.device)[:, None] * n
    entries = [
        (row[..., :slots, None].expand_as(cols), cols + offset[..., None], weights),
        (row[..., slots:].expand(b, t, n), (torch.arange(n, device=score.device) + offset).expand(b, t, n), extra),
    ]
    frame = torch.arange(t, device=score.device)[:, None].expand(b, t, slots + 1)[present].view(b, num_tokens)
    pos = torch.cat([index, index.new_full((b, t, 1), n)], -1)[present].view(b, num_tokens)
    return Merge(frame, pos, *(torch.cat([e[i].reshape(b, -1) for e in entries], 1) for i in range(3)))


def priority(score: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """`(B, T, h*w)` CLS attention -> priorities: the outliers (by attention) above 2, then every other token in
    `spread_order` (in (0, 1]), so that any top-k takes the outliers first and tops up with spread-out tokens."""
    q1, q3 = score.quantile(torch.tensor([0.25, 0.75], dtype=score.dtype, device=score.device), dim=-1, keepdim=True)
    outlier = score > q3 + 1.5 * (q3 - q1)
    return torch.where(outlier, 2 + score, spread_order(h, w, score.device).to(score.dtype))


def spread_order(h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """`(h*w,)` priorities in (0, 1] whose top 4^k form a regular lattice of stride 2^-k of the grid: the Morton
    (Z-order) code of each position with its bits reversed, so the coarsest level of the quadtree comes first."""
    bits = max(h - 1, w - 1, 1).bit_length()
    row, col = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    code = torch.zeros_like(row)
    for bit in range(bits):  # row and column bit k go to bits 2(bits-1-k) and 2(bits-1-k)+1: Morton, reversed
        code |= ((row >> bit) & 1) << (2 * bits - 2 - 2 * bit) | ((col >> bit) & 1) << (2 * bits - 1 - 2 * bit)
    return 1 - code.flatten().double() / 4**bits


REDUCERS.register("prumerge")(SetReducer("prumerge", prumerge_plan, needs_attention=True))
