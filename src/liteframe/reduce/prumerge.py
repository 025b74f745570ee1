"""LLaVA-PruMerge (Shang et al., 2024) per frame: keep the tokens whose CLS attention is an outlier (above
Q3 + 1.5 IQR), top up with spatially spread tokens to the budget (as PruMerge+ does), then fold every pruned token
into its most similar kept token, weighted by attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from liteframe.reduce.base import REDUCERS, SetReducer, frame_tokens


def prumerge(patches: torch.Tensor, queries: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """`(B, T, H, W, C), (B, T, C) -> (B, num_tokens, C)` in original order; the budget is split evenly over frames."""
    x, queries, keep = frame_tokens(patches, queries, num_tokens, "prumerge")
    b, t, n, c = x.shape
    h, w = patches.shape[2:4]
    attn = torch.einsum("btnc,btc->btn", x, queries / math.sqrt(c)).softmax(-1)
    dtype = x.dtype

    slots = int(keep.max())
    index = priority(attn, h, w).topk(slots, dim=-1).indices  # (B, T, slots)
    valid = (torch.arange(slots, device=x.device) < keep[:, None]).expand_as(index)  # slot j of frame t is used
    # Used slots in raster order first, so that the tokens come out in their original order.
    index = index.gather(-1, torch.where(valid, index, n + index).argsort(-1))
    kept = x.gather(2, index[..., None].expand(-1, -1, -1, c))

    # Every token joins its most similar used slot (the token's own norm cannot change which); a kept token joins
    # its own slot.
    sim = x @ F.normalize(kept, dim=-1).transpose(-1, -2)  # (B, T, n, slots)
    owner = sim.masked_fill(~valid[..., None, :], -torch.inf).argmax(-1)
    slot = torch.arange(slots, device=x.device).expand_as(index)
    owner.scatter_(-1, index, torch.where(valid, slot, owner.gather(-1, index)))
    weights = F.one_hot(owner, slots).to(dtype).mul_(attn[..., None]).transpose(-1, -2)  # (B, T, slots, n)
    merged = (weights @ x) / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    return merged[valid].view(b, num_tokens, c).to(patches.dtype)


def priority(attn: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """`(B, T, h*w)` attention -> priorities: the outliers (by attention) above 2, then every other token in
    `spread_order` (in (0, 1]), so that any top-k takes the outliers first and tops up with spread-out tokens."""
    q1, q3 = attn.quantile(torch.tensor([0.25, 0.75], dtype=attn.dtype, device=attn.device), dim=-1, keepdim=True)
    outlier = attn > q3 + 1.5 * (q3 - q1)
    return torch.where(outlier, 2 + attn, spread_order(h, w, attn.device).to(attn.dtype))


def spread_order(h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """`(h*w,)` priorities in (0, 1] whose top 4^k form a regular lattice of stride 2^-k of the grid: the Morton
    (Z-order) code of each position with its bits reversed, so the coarsest level of the quadtree comes first."""
    bits = max(h - 1, w - 1, 1).bit_length()
    row, col = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    code = torch.zeros_like(row)
    for bit in range(bits):  # row and column bit k go to bits 2(bits-1-k) and 2(bits-1-k)+1: Morton, reversed
        code |= ((row >> bit) & 1) << (2 * bits - 2 - 2 * bit) | ((col >> bit) & 1) << (2 * bits - 1 - 2 * bit)
    return 1 - code.flatten().double() / 4**bits


REDUCERS.register("prumerge")(SetReducer(prumerge))
