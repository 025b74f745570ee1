"""Visual encoders of the VideoLLM: frames in, LLM tokens out.

Every choice is a backbone that maps pixels to a `TokenGrid`, optionally a reducer, and InternVL's pixel shuffle and
projector. Where the reducer sits follows SPEC 3: grid reducers (WAP, pooling) act on the ViT grid before pixel
shuffle, set reducers (ToMe, PruMerge, FastVID) on the pixel-shuffled grid, just before the projector.

The encoder runs chunk by chunk (`encode_chunk`, then `finish`) so that memory stays bounded for long videos. A chunk
holds whole 4-frame clips, so grid reducers and the student never straddle a chunk boundary; set reducers choose their
tokens over the whole video, so they run once in `finish`.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from liteframe.errors import InputError
from liteframe.grid import TokenGrid
from liteframe.models import LiteFrameEncoder, Teacher, to_llm_tokens
from liteframe.reduce import REDUCERS, block_for, get_reducer


class VisualEncoder(nn.Module):
    """`pixels (B, T, 3, S, S) -> (B, N, d_llm)` LLM tokens in time order; T must be a multiple of `frame_multiple`.

    `frames_per_slot(T)`: input frames behind one image slot of the prompt: 1 for the dense ViT, 4 where a clip's
    frames merge into one grid (the student, grid reducers), all T for a set reducer, whose kept tokens belong to
    no fixed frame."""

    def __init__(self, name: str, backbone: nn.Module, projector: nn.Module, image_size: int, reducer=None,
                 compression: int = 16, frame_multiple: int = 1, merged_frames: int = 1):
        super().__init__()
        self.name, self.backbone, self.projector, self.image_size = name, backbone, projector, image_size
        self.reducer, self.compression = reducer, compression
        self.frame_multiple, self.merged_frames = frame_multiple, merged_frames

    @property
    def is_set_reducer(self) -> bool:
        return self.reducer is not None and not self.reducer.keeps_grid

    def frames_per_slot(self, frames: int) -> int:
        return frames if self.is_set_reducer else self.merged_frames

    def check_frames(self, frames: int) -> None:
        if frames < 1 or frames % self.frame_multiple:
            raise InputError(
                f"--frames {frames}: the {self.name} encoder takes a positive multiple of {self.frame_multiple} frames"
            )

    def encode_chunk(self, pixels: torch.Tensor) -> torch.Tensor | TokenGrid:
        """`(B, T, 3, S, S)`, T a multiple of `frame_multiple` -> LLM tokens `(B, N, d_llm)`, or, for a set
        reducer, the pixel-shuffled grid that `finish` reduces over the whole video."""
        grid = self.backbone(pixels)
        if self.reducer is None:
            return to_llm_tokens(grid, self.projector)
        if self.reducer.keeps_grid:
            return to_llm_tokens(self.reducer(grid, self.compression), self.projector)
        return grid.pixel_shuffle()

    def finish(self, parts: list) -> torch.Tensor:
        """Chunk outputs in time order -> `(B, N, d_llm)`."""
        if not self.is_set_reducer:
            return torch.cat(parts, dim=1)
        cls = None if parts[0].cls is None else torch.cat([p.cls for p in parts], dim=1)
        grid = TokenGrid(torch.cat([p.patches for p in parts], dim=1), cls)
        tokens = self.reducer(grid, self.compression)
        return self.projector(tokens.to(next(self.projector.parameters()).dtype))

    def forward(self, pixels: torch.Tensor, chunk_frames: int = 32) -> torch.Tensor:
        """`(B, T, 3, S, S) -> (B, N, d_llm)`, running the backbone on `chunk_frames` frames at a time."""
        self.check_frames(pixels.shape[1])
        return self.finish([self.encode_chunk(c) for c in pixels.split(chunk_frames, dim=1)])


def build_encoder(spec: str, teacher: Teacher, compression: int = 16) -> VisualEncoder:
    """`dense`, a registered reducer name, or `student:DIR` -> a `VisualEncoder` in front of the checkpoint whose
    vision tower and projector `teacher` wraps (a student uses only the projector)."""
    if spec == "dense":
        return VisualEncoder(spec, teacher, teacher.projector, teacher.image_size)
    if spec.startswith("student:"):
        student = load_student(spec.removeprefix("student:"), teacher)
        cfg = student.config
        merged = math.prod(s[0] for s in cfg.strides)
        return VisualEncoder(spec, student, teacher.projector, cfg.image, frame_multiple=cfg.clip_frames,
                             merged_frames=merged)
    if spec in REDUCERS:
        reducer = get_reducer(spec)
        t = block_for(compression)[0] if reducer.keeps_grid else 1
        return VisualEncoder(spec, teacher, teacher.projector, teacher.image_size, reducer, compression,
                             frame_multiple=t, merged_frames=t)
    raise InputError(f"unknown encoder {spec!r}; choose dense, student:DIR or one of {', '.join(REDUCERS.names())}")


def load_student(directory: str, teacher: Teacher) -> LiteFrameEncoder:
    """A saved LiteFrame student whose output width is the checkpoint's vision width (what its projector takes)."""
    if not Path(directory).is_dir():
        raise InputError(f"student folder {directory}: not found")
    student = LiteFrameEncoder.from_pretrained(directory)
    if student.config.out_dim != teacher.hidden_size:
        raise InputError(
            f"student {directory}: out_dim {student.config.out_dim} does not match the checkpoint's vision width "
            f"{teacher.hidden_size}, which its projector expects"
        )
    return student
