"""Visual encoders of the VideoLLM: frames in, LLM tokens with their prompt slots out.

Every encoder is the same fixed pipeline (SPEC 3):

    backbone (the checkpoint's ViT, or a LiteFrame student) -> grid stage (WAP, avg, max, subsample, or none)
    -> pixel shuffle -> set stage (ToMe, PruMerge, FastVID, or none) -> projector

What differs between checkpoints comes from their model family as one `Vision` (`liteframe.llm.family`): the
backbone and projector, the data config (how frames are sized and normalised, how many frames one grid step reads),
the input behind one backbone token, and whether the pixel shuffle applies (InternVL's; Qwen2.5-VL's merger is
inside its backbone). A grid step after the grid stage is one step of the backbone (a frame for InternVL, a frame
pair for Qwen2.5-VL) or one clip of `compression.clip` such steps (grid reducers, the student): `frames_per_step`
input frames, one image slot of the prompt each. Set reducers keep each kept token's step, so their slots stay per
backbone step, with a count per step that may vary (FastVID).

The encoder owns everything from a decoded chunk to the LLM tokens: `prepare` (the data config, unless the front
end already resized and normalised the frames as it decoded them), `encode_chunk`, then `finish`, so that memory
holds one chunk of frames however long the video. A chunk holds whole steps, so the grid stage never straddles a
chunk boundary; the set stage chooses its tokens over the whole video, so it runs once in `finish`.

An `EncoderSpec` is what a user names (`dense`, a reducer, `student:DIR`), parsed once where it enters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from liteframe.compression import DEFAULT, Compression
from liteframe.errors import InputError
from liteframe.grid import TokenGrid, TokenSet
from liteframe.llm.data import DataConfig
from liteframe.models import LiteFrameEncoder, Teacher
from liteframe.models.towers import deepstack_levels
from liteframe.reduce import REDUCERS, Reducer, get_reducer


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder as a user names it (`--encoder`, a config's `encoder`, `VideoLLM.from_pretrained`), parsed once
    where it enters: `dense` (the checkpoint's own ViT), a registered `reducer` after it, or a LiteFrame `student`
    folder (`student:DIR`)."""

    reducer: str | None = None
    student: Path | None = None

    @classmethod
    def parse(cls, value: str | Path | EncoderSpec) -> EncoderSpec:
        """`dense`, a reducer name or `student:DIR` -> the spec; one line naming the choices otherwise."""
        if isinstance(value, EncoderSpec):
            return value
        text = str(value).strip()
        if text.startswith("student:"):
            if not text.removeprefix("student:"):
                raise InputError("encoder student: needs the student's folder, student:DIR")
            return cls(student=Path(text.removeprefix("student:")))
        if text == "dense":
            return cls()
        if text not in REDUCERS:
            raise InputError(f"unknown encoder {text!r}; choose dense, student:DIR or one of "
                             f"{', '.join(REDUCERS.names())}")
        return cls(reducer=text)

    def relative_to(self, base: str | Path) -> EncoderSpec:
        """A student folder given relative to `base` (a config file's folder) made absolute; others unchanged."""
        return self if self.student is None else EncoderSpec(student=(Path(base) / self.student).resolve())

    def __str__(self) -> str:
        return f"student:{self.student}" if self.student is not None else self.reducer or "dense"


@dataclass
class Vision:
    """A checkpoint's path from frames to LLM tokens, as its model family gives it to the pipeline: `backbone`
    (normalised frames `(1, T, 3, h, w)` -> `TokenGrid`; `attention=True` adds the scores and keys the attention
    reducers read), `projector` (backbone tokens -> LLM width), the `data` config, `token`: the input `(frames,
    pixels, pixels)` behind one backbone token, `shuffle`: InternVL's 2 x 2 pixel shuffle between the grid and set
    stages, and for a backbone that compresses itself (a student) its own `compression` and the `clip` of frames
    one forward must take whole."""

    backbone: nn.Module
    projector: nn.Module
    data: DataConfig
    token: tuple[int, int, int]
    shuffle: bool = True
    compression: Compression | None = None
    clip: int = 1


@dataclass
class VisualTokens:
    """What an encoder gives for one video: LLM tokens `(1, N, d_llm)` in time order, `counts (S,)` the tokens of
    each grid step (one prompt slot each; a step covers `frames_per_step` input frames), and where each token sits in
    the grid after the pixel shuffle, `grid (S, H, W)`: its `step (N,)` and raster position `pos (N,)` (what a family
    with positions per token, such as Qwen's mRoPE, needs). `levels`: the backbone's further grids reduced as the
    tokens were, `(1, N, d_llm)` each in the tokens' order (Qwen3-VL's DeepStack features; none elsewhere)."""

    tokens: torch.Tensor
    counts: list[int]
    frames_per_step: int
    step: torch.Tensor
    pos: torch.Tensor
    grid: tuple[int, int, int]
    levels: tuple[torch.Tensor, ...] = ()


class VisualEncoder(nn.Module):
    """A decoded chunk -> `VisualTokens` through `vision` (see the module docstring), `compression` and an optional
    `reducer` (its `stage` puts it before or after the pixel shuffle). Takes a multiple of `frame_multiple` frames."""

    def __init__(self, name: str, vision: Vision, compression: Compression, reducer: Reducer | None = None):
        super().__init__()
        self.name, self.compression = name, compression
        self.backbone, self.projector = vision.backbone, vision.projector
        self.data, self.token, self.shuffle = vision.data, vision.token, vision.shuffle
        self.grid_stage = reducer if reducer is not None and reducer.stage == "grid" else None
        self.set_stage = reducer if reducer is not None and reducer.stage == "set" else None
        self.frames_per_step = vision.token[0] * (compression.clip if self.grid_stage else 1)
        # a grid stage pools whole clips; dense and set stages take any count (the last step padded), a student its
        # clips
        self.frame_multiple = self.frames_per_step if self.grid_stage else vision.clip
        self.needs_attention = self.set_stage is not None and self.set_stage.needs_attention

    @property
    def clip_frames(self) -> int:
        """Frames of one sampled clip (SPEC 7): the compression's clip of backbone steps, the same for every encoder
        of a checkpoint at one compression."""
        return self.compression.clip_frames(self.data.frames_per_step)

    def check_frames(self, frames: int) -> None:
        if frames < 1:
            raise InputError(f"{plural(frames, 'frame')}: the {self.name} encoder needs at least 1 frame")
        if frames % self.frame_multiple:
            raise InputError(f"{plural(frames, 'frame')}: the {self.name} encoder takes a positive multiple of "
                             f"{self.frame_multiple} frames (clips of the {self.compression.ratio}x compression)")

    def layout(self, frames: int, size: tuple[int, int] | None = None) -> tuple[int, int]:
        """`(steps, tokens)` for `frames` input frames of `size` `(H, W)` (None: the largest the data config gives),
        known before any pixel is decoded."""
        self.check_frames(frames)
        ft, ph, pw = self.token
        height, width = self.data.frame_size(frames, size)
        t, h, w = math.ceil(frames / ft), height // ph, width // pw  # the last step may be padded
        if self.grid_stage is not None:
            bt, bh, bw = self.compression.block
            t, h, w = math.ceil(t / bt), math.ceil(h / bh), math.ceil(w / bw)
        if self.shuffle:
            if h % 2 or w % 2:
                raise InputError(f"the {self.name} encoder at {self.compression.ratio}x leaves a {h} x {w} token "
                                 f"grid at {height} px, which the 2 x 2 pixel shuffle cannot merge")
            h, w = h // 2, w // 2
        return t, self.set_stage.num_tokens(t, h, w, self.compression) if self.set_stage is not None else t * h * w

    def prepare(self, chunk: torch.Tensor, device: torch.device, dtype: torch.dtype,
                frames: int | None = None) -> torch.Tensor:
        """A chunk of a video of `frames` sampled frames (None: the chunk's) from the front end -> `(1, n, 3, h, w)`
        in `dtype` on `device`: uint8 `(n, 3, H, W)` frames go through the data config (resized for the whole
        video, normalised, the last step padded); float frames were resized and normalised as they were decoded
        (`data.decode_size`)."""
        if chunk.dtype == torch.uint8:
            chunk = self.data(chunk, device, frames).to(dtype)
        return chunk[None]

    def encode_chunk(self, pixels: torch.Tensor) -> TokenGrid:
        """`(B, T, 3, h, w)`, T whole steps -> the grid after the grid stage and the pixel shuffle."""
        grid = self.backbone(pixels, attention=True) if self.needs_attention else self.backbone(pixels)
        if self.grid_stage is not None:
            grid = self.grid_stage(grid, self.compression)
        return grid.pixel_shuffle() if self.shuffle else grid

    def finish(self, parts: list[TokenGrid]) -> VisualTokens:
        """Chunk outputs in time order -> the set stage over the whole video, then the projector (levels are in the
        LLM's width already: they bypass it)."""
        grid = _concat(parts) if len(parts) > 1 else parts[0]
        kept = _everything(grid) if self.set_stage is None else self.set_stage(grid, self.compression)
        tokens = self.projector(kept.tokens.to(next(self.projector.parameters(), kept.tokens).dtype))
        return VisualTokens(tokens, kept.counts()[0].tolist(), self.frames_per_step, kept.step[0], kept.pos[0],
                            tuple(grid.shape[1:4]), kept.levels)

    def forward(self, pixels: torch.Tensor, chunk_frames: int = 32) -> VisualTokens:
        """Normalised `(B, T, 3, h, w) -> VisualTokens`, running the backbone on `chunk_frames` frames at a time."""
        self.check_frames(pixels.shape[1])
        return self.finish([self.encode_chunk(c) for c in pixels.split(chunk_frames, dim=1)])


def build_encoder(family, model, spec: EncoderSpec, compression: Compression | None = None,
                  folder: Path | None = None, pixels: str = "processor") -> VisualEncoder:
    """`spec` in front of `model`, a checkpoint of `family` whose files are in `folder`, at `compression` (None: a
    student's own, else 16x): the family's `vision(model, folder, pixels)`, or its `student(model, student folder,
    folder)`, with the spec's reducer."""
    if spec.student is None:
        return VisualEncoder(str(spec), family.vision(model, folder, pixels), compression or DEFAULT,
                             get_reducer(spec.reducer) if spec.reducer else None)
    if pixels != "processor":
        raise InputError(f"pixels {pixels!r}: a student reads frames at its own size; only 'processor' applies")
    vision = family.student(model, spec.student, folder)
    if compression is not None and compression != vision.compression:
        raise InputError(f"student {spec.student} compresses {vision.compression}, not {compression}")
    return VisualEncoder(str(spec), vision, vision.compression)


def load_student(directory: Path, teacher: Teacher) -> LiteFrameEncoder:
    """A saved LiteFrame student, refused in one line unless it fits the checkpoint whose vision tower (and
    projector) `teacher` wraps: it was cropped from a tower of that kind (and reads its grid steps), it gives a level
    for each of the tower's DeepStack mergers, its output width is the vision width the projector (Qwen's merger)
    takes, and its image size is the checkpoint's (a tower with no size of its own, Qwen's, takes the student's), in
    whole strides."""
    if not Path(directory).is_dir():
        raise InputError(f"student folder {directory}: not found")
    student = LiteFrameEncoder.from_pretrained(directory)
    cfg = student.config
    tower = teacher.vision.config.model_type
    if (cfg.teacher or tower) != tower or cfg.temporal_patch != teacher.frames_per_step:
        raise InputError(f"student {directory}: distilled from a {cfg.teacher or 'other'} tower, not this "
                         f"checkpoint's {tower}: a student reads only its own teacher's family")
    levels = deepstack_levels(teacher.vision)
    if cfg.levels != levels:
        raise InputError(f"student {directory}: it gives {cfg.levels} levels, but the checkpoint's tower has {levels} "
                         "DeepStack mergers to feed")
    if cfg.out_dim != teacher.hidden_size:
        raise InputError(f"student {directory}: output width {cfg.out_dim} does not match the checkpoint's vision "
                         f"width {teacher.hidden_size}, which its projector takes")
    if not teacher.tower.square and cfg.image != teacher.image_size:
        raise InputError(f"student {directory}: image size {cfg.image} does not match the checkpoint's "
                         f"{teacher.image_size}")
    side = cfg.image // cfg.patch
    if cfg.image % cfg.patch or side % (2 * cfg.block[1]):
        raise InputError(f"student {directory}: a {side} x {side} patch grid does not split into its "
                         f"{cfg.block[1:]} spatial strides and the pixel shuffle's 2 x 2")
    return student


def _everything(grid: TokenGrid) -> TokenSet:
    """Every token of `(B, T, H, W, C)` as a TokenSet, in time then raster order, levels alike."""
    b, t, h, w, _ = grid.shape
    index = torch.arange(t * h * w, device=grid.patches.device).expand(b, -1)
    return TokenSet(grid.tokens(), index // (h * w), index % (h * w), t,
                    tuple(level.flatten(1, 3) for level in grid.levels))


def _concat(parts: list[TokenGrid]) -> TokenGrid:
    """Grids of consecutive chunks -> one grid along time, every per-frame field (and each level) concatenated."""
    fields = {name: [getattr(p, name) for p in parts] for name in vars(parts[0]) if name != "levels"}
    levels = tuple(torch.cat(xs, dim=1) for xs in zip(*(p.levels for p in parts)))
    return TokenGrid(**{name: None if xs[0] is None else torch.cat(xs, dim=1) for name, xs in fields.items()},
                     levels=levels)


def plural(n: int, noun: str) -> str:
    """`1 frame`, `2 frames`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
