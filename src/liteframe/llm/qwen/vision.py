"""Qwen2.5-VL's vision side: its frame size rule (`smart_resize` within a pixel budget), patch layout, and the
backbone the encoder pipeline runs (`QwenVision`).

Qwen's ViT patchifies frame pairs (temporal patch 2, 14 px patches) and its merger turns each 2x2 group of patches
into one LLM token; there is no CLS token. The backbone is the ViT and merger, its grid the merger's output viewed as
`(T/2, H/28, W/28, D_llm)`: Qwen's patch order keeps each 2x2 group contiguous and the groups in raster order. So
the pipeline's pixel shuffle and projector are identities, a grid step is a frame pair and a `(4, 2, 2)` block spans
8 frames (`Compression.clip_frames(2)`); grid and set reducers both act on the merged grid.

WAP's query is the frame pair's mean token (SPEC 3: the query of a ViT without CLS), and PruMerge's and FastVID's
per-token score is the same query's softmax over the pair's tokens, with the tokens themselves as keys (the
documented substitute for a CLS attention row and the ViT's keys). It is the default because SPEC 3 names it and it
costs nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from liteframe.errors import InputError
from liteframe.grid import TokenGrid

FRAMES_PER_STEP = 2  # Qwen2.5-VL's temporal patch: one grid step is a frame pair
PATCH = 14
MERGE = 2
FACTOR = PATCH * MERGE  # sides are multiples of 28
# The pixel budget per frame of transformers' Qwen2-VL video processor (qwen-vl-utils' VIDEO_MIN/MAX_PIXELS).
MIN_PIXELS = 128 * FACTOR * FACTOR
MAX_PIXELS = 768 * FACTOR * FACTOR
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def smart_resize(height: int, width: int, factor: int = FACTOR, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Qwen's resize rule: sides rounded to multiples of `factor`, then scaled (keeping the aspect ratio) into
    `[min_pixels, max_pixels]`."""
    if not 0 < min_pixels <= max_pixels:
        raise InputError(f"pixel budget [{min_pixels}, {max_pixels}]: need 0 < min_pixels <= max_pixels")
    if min(height, width) < 1 or max(height, width) > 200 * min(height, width):
        raise InputError(f"frame size {height}x{width}: Qwen2.5-VL needs sides >= 1 and an aspect ratio under 200")
    h, w = round(height / factor) * factor, round(width / factor) * factor
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / scale / factor) * factor)
        w = max(factor, math.floor(width / scale / factor) * factor)
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * scale / factor) * factor, math.ceil(width * scale / factor) * factor
    return h, w


@dataclass(frozen=True)
class PixelBudget:
    """Qwen's size policy: `smart_resize` within `[min_pixels, max_pixels]` (the video processor's budget per
    frame). Unknown frames: a square filling the budget, the most tokens a frame of ordinary shape gives."""

    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    fixed = False

    def __call__(self, frames: int, height: int, width: int) -> tuple[int, int]:
        return smart_resize(height, width, min_pixels=self.min_pixels, max_pixels=self.max_pixels)

    def largest(self, frames: int) -> tuple[int, int]:
        side = math.isqrt(self.max_pixels)
        return self(frames, side, side)


def patchify(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """`(2T, 3, H, W)` -> rows `(T*h*w, 3*2*14*14)` ordered (step, merged row, merged column, 2x2 group) and the
    grid `(T, h, w)` in patches: the processor's layout, which the ViT and its merger assume."""
    n, c, height, width = x.shape
    t, h, w = n // FRAMES_PER_STEP, height // PATCH, width // PATCH
    x = x.view(t, FRAMES_PER_STEP, c, h // MERGE, MERGE, PATCH, w // MERGE, MERGE, PATCH)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(t * h * w, c * FRAMES_PER_STEP * PATCH * PATCH), (t, h, w)


def video_grid(visual: nn.Module, pixels: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Qwen's vision model (`model.model.visual`), pixel rows and patch grid `(T, h, w)` -> merged tokens
    `(T, h/2, w/2, D_llm)`: the ViT and merger's output (`get_video_features(...).pooler_output`) viewed as a grid."""
    out = visual(pixels.to(visual.dtype), grid_thw=torch.tensor([grid], device=pixels.device))
    t, h, w = grid
    return out.pooler_output.view(t, h // MERGE, w // MERGE, -1)


def query_scores(patches: torch.Tensor) -> torch.Tensor:
    """`(B, T, H, W, C) -> (B, T, H, W)`: the softmax over each step's tokens of their dot product with the step's
    mean token (its WAP query) over sqrt(C), in float32: the per-token score PruMerge and FastVID read on Qwen."""
    b, t, h, w, c = patches.shape
    x = patches.float()
    logits = torch.einsum("bthwc,btc->bthw", x, x.mean(dim=(2, 3)) / math.sqrt(c))
    return logits.reshape(b, t, h * w).softmax(-1).view(b, t, h, w)


class QwenVision(nn.Module):
    """Qwen's ViT and merger as the pipeline's backbone: normalised frames `(1, T, 3, H, W)` (T even, sides multiples
    of 28) -> `TokenGrid (1, T/2, H/28, W/28, D_llm)`. `attention`: the grid also carries `query_scores` and the
    tokens as keys (the substitute for a CLS attention row; see the module docstring)."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual

    def forward(self, pixels: torch.Tensor, attention: bool = False) -> TokenGrid:
        if pixels.shape[0] != 1:
            raise ValueError(f"QwenVision encodes one video at a time, got a batch of {pixels.shape[0]}")
        rows, grid = patchify(pixels[0])
        patches = video_grid(self.visual, rows, grid)[None]
        return TokenGrid(patches, scores=query_scores(patches), keys=patches) if attention else TokenGrid(patches)
