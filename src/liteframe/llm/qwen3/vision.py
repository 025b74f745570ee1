"""Qwen3-VL's and Qwen3.5's vision tower as the encoder pipeline's backbone: normalised frames -> the merged grid,
with every DeepStack level (Qwen3-VL) as a level of the same shape.

The tower reads frame pairs in 16 px patches and its merger turns each 2x2 group into one LLM token, in the
processor's patch order (each 2x2 group contiguous, groups in raster order), so the merger's output viewed as
`(T/2, H/32, W/32, D)` is the grid. DeepStack: after each block in `deepstack_visual_indexes` the hidden states go
through that level's own merger (2x2 groups too, `D` wide), and the LLM adds level k to its hidden states after
decoder layer k at the visual positions; each level is a grid of the same shape, which every reducer reduces with
the decision it takes on the tokens (`TokenGrid.levels`). Attention is within a frame pair (one sequence per grid
step), so running the tower on chunks of whole pairs gives the same grid as one pass.
"""
from __future__ import annotations

import torch
from torch import nn

from liteframe.grid import TokenGrid
from liteframe.llm.qwen.vision import query_scores

PATCH = 16
MERGE = 2
FRAMES_PER_STEP = 2  # temporal patch: one grid step is a frame pair
FACTOR = PATCH * MERGE  # frame sides are multiples of 32


def patchify(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """`(2T, 3, H, W)` -> pixel rows `(T*h*w, 3*2*16*16)` ordered (step, merged row, merged column, 2x2 group) and
    the grid `(T, h, w)` in patches: the processor's layout, which the ViT and its mergers assume."""
    n, c, height, width = x.shape
    t, h, w = n // FRAMES_PER_STEP, height // PATCH, width // PATCH
    x = x.view(t, FRAMES_PER_STEP, c, h // MERGE, MERGE, PATCH, w // MERGE, MERGE, PATCH)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(t * h * w, c * FRAMES_PER_STEP * PATCH * PATCH), (t, h, w)


class Qwen3Vision(nn.Module):
    """The tower (`model.model.visual`) as the pipeline's backbone: normalised frames `(1, T, 3, H, W)` (T even,
    sides multiples of 32) -> `TokenGrid (1, T/2, H/32, W/32, D)` of `get_video_features`' `pooler_output`, with its
    `deepstack_features` as levels (none for Qwen3.5). `attention`: the grid also carries Qwen2.5-VL's substitute
    scores (`query_scores`: softmax of each token against its pair's mean token) and the tokens as keys, for
    PruMerge and FastVID."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, pixels: torch.Tensor, attention: bool = False) -> TokenGrid:
        if pixels.shape[0] != 1:
            raise ValueError(f"Qwen3Vision encodes one video at a time, got a batch of {pixels.shape[0]}")
        rows, (t, h, w) = patchify(pixels[0])
        out = self.visual(rows.to(self.visual.dtype), grid_thw=torch.tensor([(t, h, w)], device=rows.device))
        shape = (1, t, h // MERGE, w // MERGE, -1)
        patches = out.pooler_output.view(shape)
        levels = tuple(level.view(shape) for level in getattr(out, "deepstack_features", None) or ())
        if attention:
            return TokenGrid(patches, scores=query_scores(patches), keys=patches, levels=levels)
        return TokenGrid(patches, levels=levels)
