"""Qwen2.5-VL's 3D rotary positions (mRoPE), computed by liteframe for dense, grid-reduced and set-reduced video.

The rule (Qwen2-VL and Qwen2.5-VL papers, and the reference `get_rope_index` of transformers 4.49-4.5x): a text token's
temporal, height and width ids are one id that grows by 1 per token; a video token at merged-grid step `t`, row `h`,
column `w` has ids `(start + floor(t * interval), start + h, start + w)`, where `interval = tokens_per_second *
seconds per grid step` ties the temporal id to absolute time; the text after the video starts at the largest id
used so far plus 1, and generation continues from there (`rope_delta = next id - sequence length`).

transformers 5.25's `Qwen2_5_VLModel.get_rope_index` starts the text after a video at `start + max(h, w)` instead
(the grid in merged tokens), which overlaps the video's temporal ids as soon as `floor((T-1) * interval) >= max(h, w)`
(any video of more than a few seconds). liteframe follows the published rule; the tests pin both.
"""
from __future__ import annotations

import torch


def set_positions(step: torch.Tensor, pos: torch.Tensor, w: int, interval: float) -> torch.Tensor:
    """`(N,)` grid steps and raster positions (`h*W + w`) of the video's tokens -> `(3, N)` ids relative to the
    video's start: each token keeps its (t, h, w) place in the grid it came from (every place, for a dense grid)."""
    steps = (step.to(torch.float64) * interval).long()
    return torch.stack([steps, pos // w, pos % w])


def rope_positions(is_video: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, int]:
    """`(L,)` bool mask of the one video's tokens (one contiguous run) and its `(3, N)` relative ids ->
    `(3, 1, L)` position ids and the rope delta: the next token's id minus L, what generation adds to its index."""
    length = is_video.shape[0]
    where = is_video.nonzero().flatten()
    if len(where) != video.shape[1] or (len(where) and int(where[-1] - where[0]) + 1 != len(where)):
        raise ValueError(f"{len(where)} video placeholders (in one run) for {video.shape[1]} video tokens")
    if not len(where):
        return torch.arange(length, device=is_video.device).expand(3, 1, -1), 0
    first, end = int(where[0]), int(where[-1]) + 1
    video = video.to(is_video.device) + first
    after = int(video.max()) + 1
    ids = torch.cat([
        torch.arange(first, device=is_video.device).expand(3, -1),
        video,
        torch.arange(after, after + length - end, device=is_video.device).expand(3, -1),
    ], dim=1)
    return ids[:, None], after + length - end - length
