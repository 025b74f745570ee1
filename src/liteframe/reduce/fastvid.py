"""FastVID (Shen et al., 2025) with its published defaults: cut the video into segments where neighbouring frames
differ, keep each frame's most attended tokens, and merge the rest of each segment around density peaks.
Ours: density and delta are measured among the candidates of the same anchor frame (so the cost grows linearly
with segment length), the anchors are then the segment's top density x delta; the budget per frame is
`frame_budgets`, of which round(0.4 x budget) goes to the segment's context tokens."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from liteframe.reduce.base import REDUCERS, SetReducer, frame_tokens

SEGMENTS = 8  # c: cut at the c - 1 least similar neighbouring frames...
THRESHOLD = 0.9  # tau: ...and wherever the similarity falls below this
CONTEXT_SHARE = 0.4  # d: share of the budget given to merged context tokens
ANCHOR_STRIDE = 4  # p: anchors come from every p-th frame of a segment
NEIGHBOURS = 4  # k of the k-nearest-neighbour density
MIN_ANCHOR_WEIGHT = 0.6


def fastvid(patches: torch.Tensor, queries: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """`(B, T, H, W, C), (B, T, C) -> (B, num_tokens, C)` in original order (time, then raster)."""
    x, queries, keep = frame_tokens(patches, queries, num_tokens, "fastvid")
    b, t, n, c = x.shape
    context = (keep * CONTEXT_SHARE).round().long()
    score = torch.einsum("btnc,btc->btn", x, queries)  # the CLS attention's ranking
    salient = score.argsort(-1, descending=True).argsort(-1) < (keep - context)[:, None]  # (B, T, n)

    kept = salient.clone()
    anchors, values = [], []
    starts = segment_starts(queries)
    ends = torch.cat([starts[:, 1:], torch.ones_like(starts[:, :1])], 1)
    # Segments have data-dependent lengths that differ between videos, so they are visited in turn; the work
    # inside each is batched over its frames and tokens.
    for (v, s0), s1 in zip(starts.nonzero().tolist(), (ends.nonzero()[:, 1] + 1).tolist()):
        budget = int(context[s0:s1].sum())
        if budget:
            index, value = merge_context(x[v, s0:s1], salient[v, s0:s1], budget)
            kept[v, s0:s1].view(-1)[index] = True
            anchors.append(v * t * n + s0 * n + index)
            values.append(value)

    flat = kept.view(-1)
    out = x.reshape(b * t * n, c)[flat]  # (B * num_tokens, C), original order
    if anchors:
        out[flat.cumsum(0)[torch.cat(anchors)] - 1] = torch.cat(values)
    return out.view(b, num_tokens, c).to(patches.dtype)


def segment_starts(queries: torch.Tensor) -> torch.Tensor:
    """`(B, T, C)` one global feature per frame -> `(B, T)` bool, True where a segment starts: frame 0, the
    frames after the c - 1 least similar neighbouring pairs, and after every pair less similar than tau."""
    g = F.normalize(queries.float(), dim=-1)
    sim = (g[:, 1:] * g[:, :-1]).sum(-1)  # (B, T - 1)
    cut = sim < THRESHOLD
    cut.scatter_(1, sim.topk(min(SEGMENTS - 1, sim.shape[1]), dim=1, largest=False).indices, True)
    return torch.cat([cut.new_ones(cut.shape[0], 1), cut], 1)


def merge_context(x: torch.Tensor, salient: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One segment `(L, n, C)` with its salient mask `(L, n)` -> `budget` anchors: flat indices `(budget,)` into
    `L * n` and their merged features `(budget, C)`."""
    length, n, c = x.shape
    score = torch.full((length, n), -1.0, dtype=x.dtype, device=x.device)
    score[::ANCHOR_STRIDE] = density_peaks(x[::ANCHOR_STRIDE], ~salient[::ANCHOR_STRIDE])
    # Salient tokens are never anchors; other frames' tokens only if the anchor frames run out of candidates.
    index = score.masked_fill(salient, -torch.inf).view(-1).topk(budget).indices
    tokens = x.view(-1, c)
    anchor = tokens[index]

    leftover = ~salient.view(-1)
    leftover[index] = False
    owner = (tokens @ F.normalize(anchor, dim=-1).T).argmax(-1)  # most cosine-similar: a token's norm cannot change it
    owner = torch.where(leftover, owner, budget)  # row `budget` collects the tokens that join no anchor
    # index_add_ costs one pass over the tokens; a membership-matrix product would grow with segment length squared.
    members = torch.zeros(budget + 1, dtype=x.dtype, device=x.device).index_add_(0, owner, leftover.to(x.dtype))
    total = torch.zeros(budget + 1, c, dtype=x.dtype, device=x.device).index_add_(0, owner, tokens)
    members, total = members[:budget, None], total[:budget]
    weight = torch.clamp(1 / (members + 1), min=MIN_ANCHOR_WEIGHT)
    return index, weight * anchor + (1 - weight) * total / members.clamp_min(1)


def density_peaks(x: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """`(F, n, C)` tokens, `(F, n)` candidates -> `(F, n)` density x delta per frame (density peaks clustering),
    -1 for non-candidates. Density is exp(-mean squared distance to the k nearest candidates, scaled by 1/sqrt(C));
    delta is the distance to the nearest denser candidate (the farthest candidate for the densest)."""
    f, n, c = x.shape
    sq = torch.linalg.vector_norm(x, dim=-1).square_()
    # |a - b|^2 from one product; torch.cdist would first copy the tokens with extra columns.
    d2 = (sq[:, :, None] + sq[:, None, :]).sub_(x @ x.transpose(-1, -2), alpha=2).clamp_min_(0).div_(c)  # (F, n, n)
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    others = candidate[:, None, :] & ~eye
    near = d2.masked_fill(~others, torch.inf).topk(min(NEIGHBOURS, n), dim=-1, largest=False).values
    density = torch.exp(-near.mean(-1))  # fewer than k candidates: infinite distances, density 0
    # Ties go to the lower index, so that duplicated tokens do not all become peaks.
    order = torch.arange(n, device=x.device)
    denser = (density[:, None, :] > density[:, :, None]) | (
        (density[:, None, :] == density[:, :, None]) & (order[None, :] < order[:, None]))
    dist = d2.sqrt_()
    farthest = dist.masked_fill(~candidate[:, None, :], 0).amax(-1)
    delta = dist.masked_fill(~(denser & others), torch.inf).amin(-1)
    delta = torch.where(torch.isinf(delta), farthest, delta)
    return torch.where(candidate, density * delta, -1.0)


REDUCERS.register("fastvid")(SetReducer(fastvid))
