"""Visual encoders of the VideoLLM: frames in, LLM tokens with their prompt slots out.

Every encoder is the same fixed pipeline (SPEC 3):

    backbone (the checkpoint's ViT, or a LiteFrame student) -> grid stage (WAP, avg, max, subsample, or none)
    -> pixel shuffle -> set stage (ToMe, PruMerge, FastVID, or none) -> projector

A grid step after the grid stage is one frame (dense ViT, set reducers) or one clip of `compression.clip` frames
(grid reducers, the student) for InternVL; a family whose ViT reads several frames per step (Qwen2.5-VL's frame
pairs) multiplies both (`Compression.clip_frames`), and a family whose backbone already merges 2 x 2 patches (Qwen's
merger) skips the pixel shuffle (`shuffle=False`). The prompt gives each step one image slot holding that step's
tokens. Set reducers keep each kept token's step, so their slots stay per frame, with a count per frame that may
vary (FastVID).

The encoder runs chunk by chunk (`encode_chunk`, then `finish`) so that memory holds one chunk of frames however
long the video. A chunk holds whole steps, so the grid stage never straddles a chunk boundary; the set stage
chooses its tokens over the whole video, so it runs once in `finish`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from liteframe.compression import Compression, get_compression
from liteframe.errors import InputError
from liteframe.grid import TokenGrid, TokenSet
from liteframe.models import LiteFrameEncoder, Teacher
from liteframe.reduce import REDUCERS, get_reducer
from liteframe.video import preprocess


@dataclass
class VisualTokens:
    """What an encoder gives for one video: LLM tokens `(1, N, d_llm)` in time order, `counts (S,)` the tokens of
    each grid step (one prompt slot each; a step covers `step_frames` input frames), and where each token sits in
    the pixel-shuffled `grid (S, H, W)`: its step `frame (N,)` and raster position `pos (N,)` (what a family with
    positions per token, such as Qwen2.5-VL's mRoPE, needs)."""

    tokens: torch.Tensor
    counts: list[int]
    step_frames: int
    frame: torch.Tensor
    pos: torch.Tensor
    grid: tuple[int, int, int]


class VisualEncoder(nn.Module):
    """`pixels (1, T, 3, S, S) -> VisualTokens`; T a multiple of `frame_multiple`. See the module docstring."""

    def __init__(self, name: str, backbone: nn.Module, projector: nn.Module, image_size: int | None,
                 compression: Compression, grid_stage=None, set_stage=None, step_frames: int = 1,
                 backbone_grid: tuple[int, int, int] = (1, 1, 1), frame_multiple: int | None = None,
                 shuffle: bool = True):
        super().__init__()
        self.name, self.backbone, self.projector, self.image_size = name, backbone, projector, image_size
        self.compression, self.grid_stage, self.set_stage = compression, grid_stage, set_stage
        self.step_frames, self.shuffle = step_frames, shuffle
        self.frame_multiple = frame_multiple or step_frames  # a student's clips may span several steps
        self.backbone_grid = backbone_grid  # (frames, pixels, pixels) behind one backbone token, per axis
        self.needs_attention = set_stage is not None and set_stage.needs_attention

    def check_frames(self, frames: int) -> None:
        if frames < 1 or frames % self.frame_multiple:
            raise InputError(f"{plural(frames, 'frame')}: the {self.name} encoder takes a positive multiple of "
                             f"{self.frame_multiple} frames (clips of the {self.compression.ratio}x compression)")

    def frame_size(self, size: tuple[int, int] | None = None) -> tuple[int, int]:
        """`(H, W)` the backbone sees for decoded frames of `size` `(H, W)` (None: not known yet)."""
        return self.image_size, self.image_size

    def preprocess(self, frames: torch.Tensor, device: torch.device) -> torch.Tensor:
        """uint8 `(N, 3, H, W)` -> float32 `(1, N, 3, S, S)` on `device`, what the backbone takes."""
        return preprocess(frames, self.image_size, device=device)[None]

    def layout(self, frames: int, size: tuple[int, int] | None = None) -> tuple[int, int]:
        """`(steps, tokens)` for `frames` input frames of `size` `(H, W)`, known before any pixel is decoded."""
        self.check_frames(frames)
        ft, ph, pw = self.backbone_grid
        height, width = self.frame_size(size)
        t, h, w = math.ceil(frames / ft), height // ph, width // pw  # a family may pad the last step (Qwen)
        if self.grid_stage is not None:
            bt, bh, bw = self.compression.block
            t, h, w = math.ceil(t / bt), math.ceil(h / bh), math.ceil(w / bw)
        if self.shuffle:
            if h % 2 or w % 2:
                raise InputError(f"the {self.name} encoder at {self.compression.ratio}x leaves a {h} x {w} token "
                                 f"grid at {height} px, which the 2 x 2 pixel shuffle cannot merge")
            h, w = h // 2, w // 2
        return t, self.compression.budget(t, h, w) if self.set_stage is not None else t * h * w

    def encode_chunk(self, pixels: torch.Tensor) -> TokenGrid:
        """`(B, T, 3, S, S)`, T a multiple of `frame_multiple` -> the pixel-shuffled grid after the grid stage."""
        grid = self.backbone(pixels, attention=True) if self.needs_attention else self.backbone(pixels)
        if self.grid_stage is not None:
            grid = self.grid_stage(grid, self.compression)
        return grid.pixel_shuffle() if self.shuffle else grid

    def finish(self, parts: list[TokenGrid]) -> VisualTokens:
        """Chunk outputs in time order -> the set stage over the whole video, then the projector."""
        grid = _concat(parts) if len(parts) > 1 else parts[0]
        kept = _everything(grid) if self.set_stage is None else self.set_stage(grid, self.compression)
        tokens = self.projector(kept.tokens.to(next(self.projector.parameters(), kept.tokens).dtype))
        return VisualTokens(tokens, kept.counts()[0].tolist(), self.step_frames, kept.frame[0], kept.pos[0],
                            tuple(grid.shape[1:4]))

    def forward(self, pixels: torch.Tensor, chunk_frames: int = 32) -> VisualTokens:
        """`(B, T, 3, S, S) -> VisualTokens`, running the backbone on `chunk_frames` frames at a time."""
        self.check_frames(pixels.shape[1])
        return self.finish([self.encode_chunk(c) for c in pixels.split(chunk_frames, dim=1)])


def build_encoder(spec: str, teacher: Teacher, compression: Compression | int | str | None = None) -> VisualEncoder:
    """`dense`, a registered reducer name, or `student:DIR` -> a `VisualEncoder` in front of the checkpoint whose
    vision tower and projector `teacher` wraps (a student uses only the projector). `compression` None: the
    student's own, else 16x."""
    patch = teacher.patch_size
    if spec.startswith("student:"):
        student, own = load_student(spec.removeprefix("student:"), teacher)
        if compression is not None and get_compression(compression) != own:
            raise InputError(f"student {spec.removeprefix('student:')} compresses {own}, not "
                             f"{get_compression(compression)}")
        t, h, w = own.block
        return VisualEncoder(spec, student, teacher.projector, student.config.image, own, step_frames=t,
                             backbone_grid=(t, patch * h, patch * w),
                             frame_multiple=math.lcm(t, student.config.compression.clip))
    return stage_encoder(VisualEncoder, spec, teacher, teacher.projector, compression, 1, patch,
                         image_size=teacher.image_size)


def stage_encoder(cls, spec: str, backbone: nn.Module, projector: nn.Module,
                  compression: Compression | int | str | None, frames_per_step: int, token_pixels: int,
                  **kwargs) -> VisualEncoder:
    """`dense` or a registered reducer name -> `cls(...)` over `backbone`, whose tokens cover `frames_per_step`
    frames and `token_pixels` px a side. A grid reducer's step is a clip (`compression.clip_frames`) and takes whole
    clips; dense and set reducers take any frame count (a family may pad the last step)."""
    compression = get_compression(compression)
    common = dict(backbone_grid=(frames_per_step, token_pixels, token_pixels), **kwargs)
    if spec == "dense":
        return cls(spec, backbone, projector, compression=compression, step_frames=frames_per_step,
                   frame_multiple=1, **common)
    if spec not in REDUCERS:
        raise InputError(f"unknown encoder {spec!r}; choose dense, student:DIR or one of "
                         f"{', '.join(REDUCERS.names())}")
    reducer = get_reducer(spec)
    if reducer.stage == "grid":
        return cls(spec, backbone, projector, compression=compression, grid_stage=reducer,
                   step_frames=compression.clip_frames(frames_per_step), **common)
    return cls(spec, backbone, projector, compression=compression, set_stage=reducer, step_frames=frames_per_step,
               frame_multiple=1, **common)


def load_student(directory: str, teacher: Teacher) -> tuple[LiteFrameEncoder, Compression]:
    """A saved LiteFrame student and its compression, refused in one line unless it fits the checkpoint: its output
    width is the vision width the projector takes, and its image size is the checkpoint's, in whole strides."""
    if not Path(directory).is_dir():
        raise InputError(f"student folder {directory}: not found")
    student = LiteFrameEncoder.from_pretrained(directory)
    cfg = student.config
    if cfg.out_dim != teacher.hidden_size:
        raise InputError(f"student {directory}: output width {cfg.out_dim} does not match the checkpoint's vision "
                         f"width {teacher.hidden_size}, which its projector takes")
    if cfg.image != teacher.image_size:
        raise InputError(f"student {directory}: image size {cfg.image} does not match the checkpoint's "
                         f"{teacher.image_size}")
    block = tuple(math.prod(s[axis] for s in cfg.strides) for axis in range(3))
    side = cfg.image // cfg.patch
    if cfg.image % cfg.patch or side % (2 * block[1]):
        raise InputError(f"student {directory}: a {side} x {side} patch grid does not split into its {block[1:]} "
                         "spatial strides and the pixel shuffle's 2 x 2")
    return student, Compression(block)


def _everything(grid: TokenGrid) -> TokenSet:
    """Every token of `(B, T, H, W, C)` as a TokenSet, in time then raster order."""
    b, t, h, w, _ = grid.shape
    index = torch.arange(t * h * w, device=grid.patches.device).expand(b, -1)
    return TokenSet(grid.tokens(), index // (h * w), index % (h * w), t)


def _concat(parts: list[TokenGrid]) -> TokenGrid:
    """Grids of consecutive chunks -> one grid along time, every per-frame field concatenated."""
    fields = {name: [getattr(p, name) for p in parts] for name in vars(parts[0])}
    return TokenGrid(**{name: None if xs[0] is None else torch.cat(xs, dim=1) for name, xs in fields.items()})


def plural(n: int, noun: str) -> str:
    """`1 frame`, `2 frames`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
