"""Qwen3-VL's and Qwen3.5's vision tower as the encoder pipeline's backbone: normalised frames -> the merged grid
and, for Qwen3-VL, every DeepStack level as grids of the same shape.

The tower reads frame pairs in 16 px patches and its merger turns each 2x2 group into one LLM token, in the
processor's patch order (each 2x2 group contiguous, groups in raster order), so the merger's output viewed as
`(T/2, H/32, W/32, D)` is the grid. DeepStack: after each block in `deepstack_visual_indexes` the hidden states go
through that level's own merger (2x2 groups too, `D` wide), and the LLM adds level k to its hidden states after
decoder layer k at the visual positions; each level is the same grid. Attention is within a frame pair (one
sequence per grid step), so running the tower on chunks of whole pairs gives the same grid as one pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from liteframe.grid import TokenGrid
from liteframe.llm.qwen import query_scores
from liteframe.llm.qwen3.frames import MERGE, patchify


@dataclass
class DeepStackGrid:
    """A backbone's output: the final merged grid (`grid.patches (B, T, H, W, D)`, with the scores and keys the set
    reducers read when asked) and the DeepStack levels, each `(B, T, H, W, D)` like `grid.patches`, in the order
    the LLM adds them (level k after decoder layer k); no levels for Qwen3.5."""

    grid: TokenGrid
    levels: list[torch.Tensor]

    def __post_init__(self):
        for level in self.levels:
            if level.shape != self.grid.patches.shape:
                raise ValueError(f"DeepStack level {tuple(level.shape)} does not match the grid "
                                 f"{tuple(self.grid.patches.shape)}")


def video_grid(visual: nn.Module, pixels: torch.Tensor, grid: tuple[int, int, int]
               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The vision model (`model.model.visual`), pixel rows `(T*h*w, 1536)` and patch grid `(T, h, w)` -> the merged
    tokens `(T, h/2, w/2, D)` and each DeepStack level `(T, h/2, w/2, D)`: `get_video_features`'s `pooler_output`
    and `deepstack_features` viewed as grids."""
    out = visual(pixels.to(visual.dtype), grid_thw=torch.tensor([grid], device=pixels.device))
    t, h, w = grid
    shape = (t, h // MERGE, w // MERGE, -1)
    return out.pooler_output.view(shape), [level.view(shape) for level in getattr(out, "deepstack_features", [])]


class Qwen3Vision(nn.Module):
    """The tower as the pipeline's backbone: normalised frames `(1, T, 3, H, W)` (T even, sides multiples of 32)
    -> `DeepStackGrid` of `(1, T/2, H/32, W/32, D)` grids. `attention`: the grid also carries Qwen2.5-VL's
    substitute scores (`query_scores`: softmax of each token against its pair's mean token) and the tokens as keys,
    for PruMerge and FastVID."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, pixels: torch.Tensor, attention: bool = False) -> DeepStackGrid:
        if pixels.shape[0] != 1:
            raise ValueError(f"Qwen3Vision encodes one video at a time, got a batch of {pixels.shape[0]}")
        rows, grid = patchify(pixels[0])
        tokens, levels = video_grid(self.visual, rows, grid)
        patches = tokens[None]
        main = TokenGrid(patches, scores=query_scores(patches), keys=patches) if attention else TokenGrid(patches)
        return DeepStackGrid(main, [level[None] for level in levels])
