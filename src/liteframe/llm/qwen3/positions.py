"""Qwen3-VL's and Qwen3.5's 3D rotary positions (interleaved mRoPE) for dense, grid-reduced and set-reduced video.

The rule (the Qwen3-VL reference `get_rope_index`, transformers 4.57, kept by 5.25): the video grid is split into
one single-step grid per timestamp run (time enters through the printed timestamps, not the temporal id). A text
token's temporal, height and width ids are one id that grows by 1 per token. The tokens of a run starting at id `s`
get `(s, s + row, s + column)`, their place in the run's grid; the text after a run starts at the largest id used
so far plus 1. Generation continues from the next id.

liteframe gives each slot's run its tokens' places in the grid the tokens came from: the step's merged grid for
dense, the pooled grid for grid reducers, and each kept token's original `(row, column)` for set reducers, a
PruMerge/FastVID token with no place of its own (`pos = H*W`) sitting at `(H, 0)` as for Qwen2.5-VL. transformers'
`get_rope_index` advances by `max(h, w)` after each run, which is the largest id + 1 for a full grid: the dense path
equals it; a set-reduced run (a sparse grid) follows the rule (its largest kept id + 1), which transformers cannot
express. "Interleaved" is how the model's rotary embedding spreads the three ids over frequencies
(`Qwen3VLTextRotaryEmbedding`); the ids themselves are as above.
"""
from __future__ import annotations

import torch


def rope_positions(is_video: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """`(L,)` bool mask of the video tokens (runs separated by text) and each video token's `(N,)` row and column
    in its run's grid -> `(3, 1, L)` position ids."""
    n = int(is_video.sum())
    if n != len(rows) or n != len(cols):
        raise ValueError(f"{n} video placeholders for {len(rows)} rows and {len(cols)} columns")
    device = is_video.device
    rows, cols = rows.to(device), cols.to(device)
    video = is_video.long()
    starts = video.diff(prepend=video.new_zeros(1)) == 1  # first token of each run
    run = starts.cumsum(0)[is_video] - 1  # run index of each video token
    extent = torch.zeros(int(starts.sum()), dtype=torch.long, device=device)
    extent = extent.scatter_reduce(0, run, torch.maximum(rows, cols) + 1, "amax")  # ids a run uses after its start
    # A text token advances the next id by 1, a run by its extent (counted on its last token): each token's start
    # id is the sum of the advances before it.
    last = is_video & ~torch.cat([is_video[1:], is_video.new_zeros(1)])
    advance = torch.where(is_video, 0, 1)
    advance[last] = extent
    start = advance.cumsum(0) - advance
    ids = start.expand(3, -1).clone()
    ids[1, is_video] += rows
    ids[2, is_video] += cols
    return ids[:, None]
