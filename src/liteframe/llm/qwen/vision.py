"""Qwen2.5-VL's vision side: how its frames are sized (`smart_resize` within a pixel budget, read from the
checkpoint's processor config: `data_config`), patch layout, and the backbone the encoder pipeline runs
(`QwenVision`).

Frame size, as `AutoProcessor` gives it (`Qwen2VLVideoProcessor`, transformers 5.25): each frame is
`smart_resize`d into `[shortest_edge, longest_edge]` pixels of the video processor's `size`, where a top-level
`min_pixels` / `max_pixels` in its config replaces the matching key (the processor's `__init__`: Qwen2.5-VL's
released `preprocessor_config.json` gives 3136 and 12845056, so a frame keeps about its own size); a folder
without a processor config gets the class's defaults (128 and 768 tokens' pixels). `cap_pixels_per_frame` (off
unless the config turns it on) also caps each frame at its share of 90% of `max_video_tokens` tokens' pixels per
frame pair. The named budget `qwen-vl-utils` is the one Qwen's own `qwen_vl_utils.fetch_video` (0.0.11) applies
before the processor sees the frames (the model card's examples): 128 to 768 tokens' pixels per frame, capped at
the frame's share of `VIDEO_TOTAL_PIXELS` (90% of 128,000 tokens' pixels; it binds above 300 frames), in its float
arithmetic. Its `smart_resize` differs from transformers' only for a side under 14 px or an aspect ratio over 128,
which liteframe does not reproduce. The frame count in either cap is the sampled count before the last pair is
padded.

Qwen's ViT patchifies frame pairs (temporal patch 2, 14 px patches) and its merger turns each 2x2 group of patches
into one LLM token; there is no CLS token. The backbone is the ViT and merger, its grid the merger's output viewed as
`(T/2, H/28, W/28, D_llm)`: Qwen's patch order keeps each 2x2 group contiguous and the groups in raster order. So
the pipeline's pixel shuffle and projector are identities, a grid step is a frame pair and a `(4, 2, 2)` block spans
8 frames (`Compression.clip_frames(2)`); grid and set reducers both act on the merged grid.

WAP's query is the frame pair's mean token (SPEC 3: the query of a ViT without CLS), and PruMerge's and FastVID's
per-token score is the same query's softmax over the pair's tokens, with the tokens themselves as keys (the
documented substitute for a CLS attention row and the ViT's keys). It is the default because SPEC 3 names it and it
costs nothing.

A LiteFrame student of a Qwen tower takes its ViT's place in front of the checkpoint's own mergers
(`student_vision`, for Qwen2.5-VL, Qwen3-VL and Qwen3.5 alike).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from liteframe.errors import InputError
from liteframe.grid import TokenGrid
from liteframe.compression import Compression
from liteframe.llm.data import DataConfig, Square
from liteframe.llm.encoders import Vision, load_student
from liteframe.models import Teacher
from liteframe.models.qwen import ThroughMerger, has_vit
from liteframe.llm.processor import pixel_range, video_settings
from liteframe.models.qwen import FRAMES_PER_STEP, MERGE, PATCH, patchify  # one grid step is a frame pair

FACTOR = PATCH * MERGE  # sides are multiples of 28
# `Qwen2VLVideoProcessor`'s default `size` (shortest_edge, longest_edge), qwen-vl-utils' VIDEO_MIN/MAX_PIXELS too
MIN_PIXELS = 128 * FACTOR * FACTOR
MAX_PIXELS = 768 * FACTOR * FACTOR
MAX_VIDEO_TOKENS = 128000  # `Qwen2VLVideoProcessor.max_video_tokens`; qwen-vl-utils' VIDEO_TOTAL_PIXELS is 90% of it
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PIXELS = ("processor", "qwen-vl-utils")  # the named budgets of `data_config`


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
    """Qwen2-VL's video processor's size policy: each frame `smart_resize`d into `[min_pixels, max_pixels]`; with
    `total_pixels` (its `cap_pixels_per_frame`), `max_pixels` is also capped at each frame's even share of that many
    pixels per frame pair, floored at 1.05 x `min_pixels`, in the processor's integer arithmetic (`cap`). Unknown
    frames (`largest`): a square filling the cap, the most tokens a frame of ordinary shape gives."""

    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    total_pixels: int | None = None
    fixed = False

    def cap(self, frames: int) -> float:
        """The most pixels of one of `frames` frames."""
        if self.total_pixels is None:
            return self.max_pixels
        share = self.total_pixels * FRAMES_PER_STEP // frames
        return max(min(self.max_pixels, share), int(self.min_pixels * 1.05))

    def __call__(self, frames: int, height: int, width: int) -> tuple[int, int]:
        return smart_resize(height, width, min_pixels=self.min_pixels, max_pixels=self.cap(frames))

    def largest(self, frames: int) -> tuple[int, int]:
        side = math.isqrt(int(self.cap(frames)))
        return self(frames, side, side)


@dataclass(frozen=True)
class QwenVLUtilsBudget(PixelBudget):
    """qwen-vl-utils' video budget (`fetch_video`): 128 to 768 tokens' pixels per frame, capped at the frame's
    share of `VIDEO_TOTAL_PIXELS` per frame pair, which it computes in float (`total / frames * 2`)."""

    total_pixels: int = int(MAX_VIDEO_TOKENS * FACTOR * FACTOR * 0.9)

    def cap(self, frames: int) -> float:
        share = self.total_pixels / frames * FRAMES_PER_STEP
        return max(min(self.max_pixels, share), int(self.min_pixels * 1.05))


def data_config(folder: str | Path | None = None, pixels: str = "processor") -> DataConfig:
    """Qwen2.5-VL's data config: `processor`, the frames `AutoProcessor` gives for the checkpoint in `folder` (its
    video processor's config, `liteframe.llm.processor`; None or a folder without one: the processor's defaults), or
    `qwen-vl-utils`, its budget with the processor's mean and std (see the module docstring)."""
    if pixels not in PIXELS:
        raise InputError(f"pixels {pixels!r}: choose {' or '.join(PIXELS)}")
    config, where = video_settings(folder, (PATCH, MERGE, FRAMES_PER_STEP), "Qwen2.5-VL")
    mean, std = tuple(config.get("image_mean", CLIP_MEAN)), tuple(config.get("image_std", CLIP_STD))
    if pixels == "qwen-vl-utils":
        return DataConfig(QwenVLUtilsBudget(), mean, std, FRAMES_PER_STEP)
    size = dict(config.get("size") or {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS})
    for key, edge in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
        if config.get(key) is not None:  # the processor's `__init__`: min/max_pixels replace the size's keys
            size[edge] = config[key]
    low, high = pixel_range(size, where)
    total = None
    if config.get("cap_pixels_per_frame"):
        total = int(config.get("max_video_tokens", MAX_VIDEO_TOKENS) * FACTOR * FACTOR * 0.9)
    return DataConfig(PixelBudget(low, high, total), mean, std, FRAMES_PER_STEP)


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


def student_vision(visual: nn.Module, student: Path, data: DataConfig, factor: int) -> Vision:
    """A LiteFrame student folder of the Qwen vision model `visual`'s tower in front of its own mergers
    (`models.qwen.ThroughMerger`): a grid step is a clip of the student's block of frame pairs, and its merged grid
    (with Qwen3-VL's levels) reaches the LLM as a grid reducer's does at the same compression. Its frames are a
    square of its own size, resized and normalised as `data` (the checkpoint's processor's) says; `factor`: the
    pixels one merged token spans (28 or 32)."""
    encoder = load_student(student, Teacher(visual))
    cfg = encoder.config
    t, h, w = cfg.block
    steps = cfg.temporal_patch
    return Vision(ThroughMerger(encoder, visual), nn.Identity(), dataclasses.replace(data, size=Square(cfg.image)),
                  (steps * t, factor * h, factor * w), shuffle=False, compression=Compression(cfg.block),
                  clip=steps * math.lcm(t, cfg.compression.clip))


def vit_of(model) -> nn.Module:
    """A Qwen checkpoint's vision model, refused in one line once a student has freed its ViT."""
    visual = model.model.visual
    if not has_vit(visual):
        raise InputError("this VideoLLM dropped its vision tower for a student: load it again with from_pretrained")
    return visual
