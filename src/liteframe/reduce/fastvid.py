"""FastVID (Shen et al., 2025) as its public code computes it, with its published defaults (BASELINES): cut the
video into segments where neighbouring frames differ (DySeg), keep each frame's most attended tokens, and merge
the rest of each segment around density peaks picked in its anchor frames (STPrune).

InternVL3 adaptations (ours): it runs on the pixel-shuffled grid (the set stage, before the projector; the
reference merges projected LLM embeddings), a token being 2 x 2 patches whose score is the sum of their CLS
attention from the ViT's last layer (InternViT has no pooling head); the global frame feature is the CLS (the mean
patch token without one). The common budget: frame t retains `frame_budgets` tokens instead of 10%, and a
segment's anchors (`context x length`) that `quota x anchor frames` leaves over go one each to its anchor frames
from the last one back; where an anchor frame has fewer candidates than its quota (only at extreme ratios on tiny
grids), the most attended tokens not yet kept fill the shortfall."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from liteframe.grid import TokenGrid, TokenSet
from liteframe.reduce.base import REDUCERS, Merge, SetReducer, attention, frame_budgets_of

SEGMENTS = 8  # c: cut at the c - 1 least similar neighbouring frames...
THRESHOLD = 0.9  # tau: ...and wherever the similarity falls below this
CONTEXT_SHARE = 0.4  # d: share of a frame's retained tokens given to merged context tokens
ANCHOR_STRIDE = 4  # p: every p-th frame of a segment, counted back from its last, is an anchor frame
NEIGHBOURS = 4  # k of the k-nearest-neighbour density, the token itself included
MIN_ANCHOR_WEIGHT = 0.6  # beta


def fastvid(grid: TokenGrid, num_tokens: int) -> TokenSet:
    """`(B, T, H, W, C)` with scores -> `TokenSet (B, num_tokens, C)` in original order; the count per frame
    varies (anchor frames hold their segment's context tokens)."""
    return fastvid_plan(grid, num_tokens).apply(grid.patches, grid.levels)


def fastvid_plan(grid: TokenGrid, num_tokens: int) -> Merge:
    """Decide which tokens survive and what each output averages: a `Merge` of `num_tokens` outputs."""
    retain = frame_budgets_of(grid, num_tokens, "fastvid")
    score, _ = attention(grid, "fastvid")
    b, t, h, w, c = grid.shape
    n = h * w
    x = grid.patches.reshape(b, t, n, c).to(score.dtype)
    context = (retain * CONTEXT_SHARE).long()  # int(): the reference's rounding
    rank = score.argsort(-1, descending=True).argsort(-1)
    salient = rank < (retain - context)[:, None]  # (B, T, n)
    starts = segment_starts(grid.queries)
    # Segments have data-dependent lengths that differ between videos, so videos are planned in turn.
    plans = [video_plan(x[v], score[v], salient[v], starts[v], context, num_tokens) for v in range(b)]
    size = max(len(p[1]) for p in plans)
    where = torch.stack([p[0] for p in plans])
    padded = [torch.stack([F.pad(p[i], (0, size - len(p[i]))) for p in plans]) for i in (1, 2, 3)]  # weight 0
    return Merge(where // n, where % n, *padded)


def video_plan(x: torch.Tensor, score: torch.Tensor, salient: torch.Tensor, starts: torch.Tensor,
               context: torch.Tensor, num_tokens: int):
    """One video `(T, n, C)`, scores and salient mask `(T, n)`, segment starts `(T,)`, context tokens per frame
    `(T,)` -> the kept flat indices `(num_tokens,)` in original order and the entries `(E,)` (output row, input
    flat index, weight) of what each kept token sums."""
    t, n, _ = x.shape
    bounds = starts.nonzero().flatten().tolist() + [t]
    kept = salient.flatten().clone()
    entries = []  # (flat index of the output token, flat index of the input token, weight)
    for s0, s1 in zip(bounds[:-1], bounds[1:]):  # the work inside a segment is batched over frames and tokens
        found = merge_segment(x[s0:s1], salient[s0:s1], int(context[s0:s1].sum()))
        if found is not None:
            anchor, row, col, weight = found
            kept[s0 * n + anchor] = True
            entries.append((s0 * n + row, s0 * n + col, weight))
    short = num_tokens - int(kept.sum())
    if short:  # anchor frames without enough candidates: the most attended tokens left fill the budget
        kept[score.flatten().masked_fill(kept, -torch.inf).topk(short).indices] = True
    solo = kept.clone()  # kept as they are: salient and filling tokens
    if entries:
        solo[torch.cat([row for row, _, _ in entries])] = False
    index = solo.nonzero().flatten()
    entries.append((index, index, torch.ones_like(index, dtype=x.dtype)))
    row, col, weight = (torch.cat(e) for e in zip(*entries))
    return kept.nonzero().flatten(), (kept.cumsum(0) - 1)[row], col, weight


def segment_starts(queries: torch.Tensor) -> torch.Tensor:
    """`(B, T, C)` one global feature per frame -> `(B, T)` bool, True where a segment starts: frame 0, the
    frames after the c - 1 least similar neighbouring pairs, and after every pair less similar than tau."""
    g = F.normalize(queries.float(), dim=-1)
    sim = (g[:, 1:] * g[:, :-1]).sum(-1)  # (B, T - 1)
    cut = sim < THRESHOLD
    cut.scatter_(1, sim.topk(min(SEGMENTS - 1, sim.shape[1]), dim=1, largest=False).indices, True)
    return torch.cat([cut.new_ones(cut.shape[0], 1), cut], 1)


def anchor_quotas(length: int, budget: int) -> tuple[list[int], list[int]]:
    """A segment's anchor frames (every p-th, counted back from its last) and each one's share of `budget`:
    `budget // frames`, the remainder one each from the last anchor frame back (ours)."""
    frames = list(range(length - 1, -1, -ANCHOR_STRIDE))
    quota, extra = divmod(budget, len(frames))
    return frames, [quota + (i < extra) for i in range(len(frames))]


def merge_segment(x: torch.Tensor, salient: torch.Tensor, budget: int):
    """One segment `(L, n, C)` with its salient mask `(L, n)` and context budget -> None (no anchors), or the
    anchors' flat indices `(A,)` into `L * n` and the entries `(E,)` of their averages: the anchor's flat index
    (row), the averaged token's (col) and its weight. Each anchor averages itself and every non-salient token of
    the segment that joins it, itself among them."""
    length, n, c = x.shape
    frames, quotas = anchor_quotas(length, budget)
    quotas = torch.minimum(torch.tensor(quotas, device=x.device), (~salient[frames]).sum(-1))
    frames = [f for f, q in zip(frames, quotas.tolist()) if q]  # a frame with no anchors has nothing to join
    if not frames:
        return None
    quotas = quotas[quotas > 0]
    candidate = ~salient[frames]  # (F, n)
    most = int(quotas.max())
    peak = density_peaks(x[frames], candidate).topk(most, dim=-1).indices  # (F, most), best first
    used = torch.arange(most, device=x.device) < quotas[:, None]  # (F, most)
    anchor = (torch.tensor(frames, device=x.device)[:, None] * n + peak)[used]  # (A,)

    tokens = x.reshape(length * n, c)
    # The most cosine-similar anchor: a token's own norm cannot change which, so only the anchors are normalised.
    sim = tokens.new_full((length * n, len(frames) * most), -torch.inf)
    sim[:, used.flatten()] = tokens @ F.normalize(tokens[anchor], dim=-1).T
    slot = torch.full((len(frames) * most,), -1, device=x.device)
    slot[used.flatten()] = torch.arange(len(anchor), device=x.device)
    best = slot[sim.view(-1, len(frames), most).argmax(-1) + most * torch.arange(len(frames), device=x.device)]
    member = (~salient.flatten()).nonzero().flatten()  # every non-salient token joins once per anchor frame
    joined = best[member].flatten()  # (members * F,)
    count = torch.zeros(len(anchor), dtype=x.dtype, device=x.device).index_add_(
        0, joined, torch.ones_like(joined, dtype=x.dtype))
    weight = torch.clamp(1 / (count + 1), min=MIN_ANCHOR_WEIGHT)
    share = (1 - weight) / count.clamp_min(1)
    row = torch.cat([anchor, anchor[joined]])
    col = torch.cat([anchor, member.repeat_interleave(len(frames))])
    return anchor, row, col, torch.cat([weight, share[joined]])


def density_peaks(x: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    """`(F, n, C)` tokens, `(F, n)` candidates -> `(F, n)` density x delta per frame (density peaks clustering),
    -inf for non-candidates. Distances are Euclidean scaled by 1/sqrt(C); density = exp(-mean squared distance to
    the k nearest candidates, the token itself included; fewer where the frame has fewer); delta = distance to the
    nearest denser candidate (the largest distance between the frame's candidates for the densest)."""
    f, n, c = x.shape
    sq = torch.linalg.vector_norm(x, dim=-1).square_()
    # |a - b|^2 from one product; torch.cdist would first copy the tokens with extra columns.
    d2 = (sq[:, :, None] + sq[:, None, :]).sub_(x @ x.transpose(-1, -2), alpha=2).clamp_min_(0).div_(c)  # (F, n, n)
    d2.diagonal(dim1=1, dim2=2).zero_()
    both = candidate[:, :, None] & candidate[:, None, :]
    near = d2.masked_fill(~both, torch.inf).topk(min(NEIGHBOURS, n), dim=-1, largest=False).values
    found = torch.isfinite(near)
    density = torch.exp(-near.where(found, 0).sum(-1) / found.sum(-1).clamp_min(1))
    dist = d2.sqrt_()
    denser = (density[:, None, :] > density[:, :, None]) & both
    farthest = dist.masked_fill(~both, 0).flatten(1).amax(-1)  # (F,)
    delta = dist.masked_fill(~denser, torch.inf).amin(-1)
    delta = torch.where(torch.isinf(delta), farthest[:, None], delta)
    return torch.where(candidate, density * delta, -torch.inf)


REDUCERS.register("fastvid")(SetReducer("fastvid", fastvid_plan, needs_attention=True))
