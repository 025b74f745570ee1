"""Qwen's vision towers as teachers, and their mergers behind a student.

Qwen2.5-VL's ViT patchifies frame pairs (temporal patch 2, 14 px patches, `patchify` gives its rows), attends within
a pair (windows of 112 px in most blocks, the whole pair in a few), and its merger turns each 2 x 2 group of patches
into one token of the LLM's width: the tower's output, and the space the training-free reducers and CTD's targets
live in (`merged_grid`). Qwen3-VL's and Qwen3.5's tower does the same on 16 px patches, with a learned position
grid resized to each input, and Qwen3-VL's DeepStack mergers turn some blocks' outputs into levels of the same
shape (`qwen3_grid`). A student replaces the ViT only: its patch grid, at the ViT's width, goes through the
checkpoint's own merger (`merge`, `ThroughMerger`), and its levels (the outputs of its last blocks) through the
DeepStack mergers, so its tokens reach the LLM where the teacher's do.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers.vision_utils import (get_vision_attention_seqlens, get_vision_interpolation_indices_and_weights,
                                       get_vision_position_ids, get_vision_window_index)

from ..grid import TokenGrid, pixel_shuffle

PATCH, MERGE, FRAMES_PER_STEP = 14, 2, 2  # Qwen2.5-VL's patch, spatial merge and temporal patch


def patchify(x: torch.Tensor, patch: int = PATCH, merge: int = MERGE, steps: int = FRAMES_PER_STEP
             ) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """`(2T, 3, H, W)` -> rows `(T*h*w, 3*2*14*14)` ordered (step, merged row, merged column, 2x2 group) and the
    grid `(T, h, w)` in patches: the processor's layout, which the ViT and its merger assume."""
    n, c, height, width = x.shape
    t, h, w = n // steps, height // patch, width // patch
    x = x.view(t, steps, c, h // merge, merge, patch, w // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(t * h * w, c * steps * patch * patch), (t, h, w)


def merged_grid(visual: nn.Module, pixels: torch.Tensor) -> TokenGrid:
    """Qwen2.5-VL's vision model (ViT and merger) on normalised frames `(B, T, 3, H, W)` (T even, sides multiples of
    28) -> the merged `TokenGrid (B, T/2, H/28, W/28, D)`. Attention never crosses a frame pair, so the B videos go
    through as one sequence of B*T/2 pairs. The rotary positions, windows and sequence bounds are computed on the
    host by transformers' own functions, as the model's forward would from `grid_thw`, and handed to it: the forward
    then syncs with the host nowhere, and runs on the meta device too (FLOP counts)."""
    config = visual.config
    b, t = pixels.shape[:2]
    rows, grid = patchify(pixels.flatten(0, 1), config.patch_size, config.spatial_merge_size,
                          config.temporal_patch_size)
    thw = torch.tensor([grid])
    window, cu_window = get_vision_window_index(thw, config.spatial_merge_size, config.window_size,
                                                config.patch_size)
    cu, _ = get_vision_attention_seqlens(thw, config)
    positions = get_vision_position_ids(thw, config.spatial_merge_size)
    out = visual(rows.to(visual.dtype), grid_thw=thw, position_ids=positions.to(pixels.device),
                 window_index=window.to(pixels.device), cu_window_seqlens=cu_window, cu_seqlens=cu)
    merge = config.spatial_merge_size
    return TokenGrid(out.pooler_output.view(b, grid[0] // b, grid[1] // merge, grid[2] // merge, -1))


def qwen3_grid(visual: nn.Module, pixels: torch.Tensor) -> TokenGrid:
    """Qwen3-VL's or Qwen3.5's vision model on normalised frames `(B, T, 3, H, W)` (T even, sides multiples of 32)
    -> the merged `TokenGrid (B, T/2, H/32, W/32, D)`, with Qwen3-VL's DeepStack features as levels of that shape.
    As `merged_grid`: the B videos as one sequence of pairs, and the position grid's resampling, the rotary
    positions and the sequence bounds computed on the host by transformers' own functions and handed to the
    forward."""
    config = visual.config
    b, device = pixels.shape[0], pixels.device
    rows, grid = patchify(pixels.flatten(0, 1), config.patch_size, config.spatial_merge_size,
                          config.temporal_patch_size)
    thw = torch.tensor([grid])
    indices, weights = get_vision_interpolation_indices_and_weights(
        thw, visual.num_grid_per_side, visual.interpolation_mode, visual.interpolation_align_corners,
        config.spatial_merge_size)
    cu, longest = get_vision_attention_seqlens(thw, config)
    positions = get_vision_position_ids(thw, config.spatial_merge_size)
    out = visual(rows.to(visual.dtype), grid_thw=thw, interp_indices=indices.to(device),
                 interp_weights=weights.to(device), position_ids=positions.to(device), cu_seqlens=cu,
                 max_seqlen=longest)
    merge = config.spatial_merge_size
    shape = (b, grid[0] // b, grid[1] // merge, grid[2] // merge, -1)
    return TokenGrid(out.pooler_output.view(shape),
                     levels=tuple(x.view(shape) for x in getattr(out, "deepstack_features", None) or ()))


def merge(merger: nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """Qwen's patch merger over a patch grid at the ViT's width: `(B, T, H, W, C) -> (B, T, H/2, W/2, D)`. Each 2 x 2
    group goes in as the ViT hands it over (row by row; InternVL's pixel shuffle lays the four out in the same order),
    through the merger's RMSNorm per patch and its MLP over the four, in the merger's dtype."""
    grouped = pixel_shuffle(patches)
    rows = grouped.reshape(-1, patches.shape[-1]).to(next(merger.parameters()).dtype)
    return merger(rows).view(*grouped.shape[:-1], -1)


class ThroughMerger(nn.Module):
    """A student in front of a Qwen vision model's mergers: frames `(B, T, 3, S, S)` -> the merged `TokenGrid
    (B, T', H'/2, W'/2, D)` of the student's grid, in the LLM's width, as the teacher's ViT and merger give theirs,
    with the student's levels through Qwen3-VL's DeepStack mergers (`through_mergers`). The mergers are looked up in
    `visual` at every call, so a trained copy put in their place (PEFT's, LMA's `train_projector`) is the one used;
    `keep_merger` frees the rest of `visual`."""

    def __init__(self, student: nn.Module, visual: nn.Module):
        super().__init__()
        self.student, self.visual = student, visual

    def forward(self, pixels: torch.Tensor) -> TokenGrid:
        return through_mergers(self.visual, self.student(pixels))


def through_mergers(visual: nn.Module, grid: TokenGrid) -> TokenGrid:
    """A student's patch grid `(B, T, H, W, C)` and its levels -> the merged `TokenGrid (B, T, H/2, W/2, D)`: the
    patches through `visual`'s merger, level k through its k-th DeepStack merger (Qwen3-VL's)."""
    mergers = getattr(visual, "deepstack_merger_list", None) or ()
    if len(grid.levels) != len(mergers):
        raise ValueError(f"the student gives {len(grid.levels)} levels for {len(mergers)} DeepStack mergers")
    return TokenGrid(merge(visual.merger, grid.patches),
                     levels=tuple(merge(m, level) for m, level in zip(mergers, grid.levels)))


def keep_merger(visual: nn.Module) -> None:
    """Free a Qwen vision model's ViT (patch embedding, Qwen3's position grid, blocks) in place, keeping its
    mergers, which a student's tokens go through."""
    visual.patch_embed, visual.blocks = None, nn.ModuleList()
    if hasattr(visual, "pos_embed"):
        visual.pos_embed = None


def has_vit(visual: nn.Module | None) -> bool:
    """Whether a Qwen vision model still has its ViT (not freed by `keep_merger`)."""
    return visual is not None and visual.patch_embed is not None
