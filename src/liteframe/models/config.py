"""The LiteFrame student's config (SPEC 4) and its named settings, the timm way: a registry of named configs and
`student_config(name, **overrides)`. Kept apart from the model, as transformers keeps `*Config` apart, so that
crop init and the model both read it without importing each other.

Strides follow the compression block `(t, h, w)` (SPEC 3): it is split into two downsamplings, the first taking a
factor 2 from every even side and the second the rest, so that their product is the block:
16x (4, 2, 2) -> (2, 2, 2) after block 4, then (2, 1, 1) after block 8 (SPEC 4);
64x (4, 4, 4) -> (2, 2, 2), then (2, 2, 2) *(ours)*;
4x (1, 2, 2) -> (1, 2, 2), then nothing (a (1, 1, 1) stage is not built) *(ours)*.
The spatial-only variant spends the same ratio on space, block `(1, h*sqrt(t), w*sqrt(t))`: at 16x that is
SPEC 4's `spatial16`, (1, 2, 2) then (1, 2, 2). The `none` variant (plain ViT-B) never downsamples.
The `keyframe` variant *(ours)* downsamples once, by the block's time `(t, 1, 1)`, always right after the patch
embedding (its `downsample_after` is not used), and spends the block's space on `scale`: the frames are resized
before the patch embedding and the output grid resampled to the block's, e.g. 16x at 224 px with `scale` 11/16:
one 154 px frame (11 x 11 patches) per 4-frame clip, 8 x 8 tokens out. The `keyframe-tome` variant *(ours)* reads
its key frame whole, merges `merge[i]` tokens after the attention of block i + 1 (ToMe, `merge.py`), carries the
key frame's tokens to the clip's other frames (`mixers.Propagate`) and pools each compression block by WAP with its
own CLS, as the distillation target is pooled.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from ..compression import DEFAULT, Compression, get_compression
from ..errors import InputError
from ..registry import Registry
from .mixers import VARIANTS, Stride

HEAD_CHOICES = ("first", "strongest")  # crop init's rule for the teacher heads a student block keeps (crop.py)
NORMS = ("layernorm", "rmsnorm")

@dataclass
class LiteFrameConfig:
    """LiteFrame-B by default. `temporal` names a variant in `VARIANTS`; `compression` (a `Compression`, or what
    `get_compression` takes) sets the clip length and the strides; `downsample_after` lists the two (1-based)
    blocks after which the strides apply. The teacher's own structure, which crop init copies: `act` (its MLP's
    activation, a transformers name), `cls_token`, `registers` (DINOv2's register tokens), `embed_norm` (CLIP's
    LayerNorm before the first block), `final_norm` (a LayerNorm before the head, cropped from the teacher's),
    `norm` (the blocks' norms, "layernorm" or Qwen's "rmsnorm"), `gated_mlp` (Qwen's SwiGLU MLP), `rope_theta`
    (None: a learned position table added at the input; a base: Qwen's 2-D rotary positions, recomputed for every
    grid the blocks see), `pos_grid` (with rotary positions, Qwen3's learned `pos_grid x pos_grid` table too, resized
    bilinearly with aligned corners to the patch grid of every input, as the tower does; 0: none),
    `levels` (the outputs of the last `levels` blocks, after the last downsampling and through the head, are levels
    of its grid, for Qwen3-VL's DeepStack mergers), `temporal_patch` (frames one patch spans: 2 for Qwen's patch
    embedding over frame pairs, whose grid steps are then pairs), and `teacher`, the `model_type` of the tower it is
    cropped from, which the checkpoints of that tower's family check ("" for configs saved before it was recorded).
    What crop init takes: `teacher_layers`, the teacher blocks (None: evenly spread, ending on the teacher's last
    block; every second one for half the depth), and `teacher_heads`, which heads of each block ("first" or
    "strongest", by the norm of their output projection). `scale`: the frames are resized by it (to a whole number
    of patches) before the patch embedding, and the output grid is area-resampled to the compression block's grid
    of the input; a `downsample_after` of 0 downsamples right after the patch embedding. `merge`: for
    `keyframe-tome`, the patch tokens ToMe merges in each block (one count per block; empty: none); `redundancy`:
    its key frames whose patches are less redundant than this (`merge.redundancy`) skip ToMe and go through the
    blocks resized by `scale` instead (0: every key frame merges, read whole)."""

    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp: int = 3072
    patch: int = 14
    image: int = 448
    out_dim: int = 1024
    temporal: str = "dwconv"
    kernel: int = 3
    compression: Compression = DEFAULT
    downsample_after: tuple[int, ...] = (4, 8)
    layerscale: float = 0.1
    qkv_bias: bool = True
    eps: float = 1e-6
    act: str = "gelu"
    cls_token: bool = True
    registers: int = 0
    embed_norm: bool = False
    final_norm: bool = False
    norm: str = "layernorm"
    gated_mlp: bool = False
    rope_theta: float | None = None
    pos_grid: int = 0
    levels: int = 0
    temporal_patch: int = 1
    teacher: str = ""
    teacher_layers: tuple[int, ...] | None = None
    teacher_heads: str = "first"
    scale: float = 1.0
    merge: tuple[int, ...] = ()
    redundancy: float = 0.0

    def __post_init__(self):
        self.compression = get_compression(self.compression)
        self.downsample_after = tuple(self.downsample_after)
        self.merge = tuple(self.merge)
        if self.teacher_layers is not None:
            self.teacher_layers = tuple(self.teacher_layers)
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every reason this config cannot be built, one phrase each."""
        split = self._split()
        keyframe = VARIANTS.get(self.temporal).compress == "keyframe"
        problems = []
        if self.width % self.heads:
            problems.append(f"width {self.width} is not a multiple of heads {self.heads}")
        if not keyframe:  # which merges right after the patch embedding, whatever downsample_after says
            if split and len(self.downsample_after) != len(split):
                problems.append(f"variant {self.temporal!r} downsamples {len(split)} times but downsample_after is "
                                f"{self.downsample_after}")
            if any(not 0 <= i <= self.depth for i in self.downsample_after):
                problems.append(f"downsample_after {self.downsample_after} must lie in 0..depth={self.depth}")
            if list(self.downsample_after) != sorted(set(self.downsample_after)):
                problems.append(f"downsample_after {self.downsample_after} must be increasing")
        if self.teacher_heads not in HEAD_CHOICES:
            problems.append(f"teacher_heads {self.teacher_heads!r} must be one of {', '.join(HEAD_CHOICES)}")
        if self.norm not in NORMS:
            problems.append(f"norm {self.norm!r} must be one of {', '.join(NORMS)}")
        if self.temporal_patch < 1:
            problems.append(f"temporal_patch {self.temporal_patch} must be at least 1")
        if self.rope_theta is not None and (self.cls_token or self.registers):
            problems.append("rope_theta: 2-D rotary positions have no place for CLS or register tokens")
        last = max((i for i, _ in self.stages), default=0)
        after = max(0, self.depth - last)
        if self.levels > after:
            problems.append(f"levels {self.levels}: only {after} blocks follow the last downsampling (after block "
                            f"{last})")
        if self.pos_grid and self.rope_theta is None:
            problems.append("pos_grid: a resized position grid comes with rotary positions (Qwen3's tower); without "
                            "them the position table is made for the input size")
        if not 0 < self.scale <= 1:
            problems.append(f"scale {self.scale} must lie in (0, 1]")
        if self.scale != 1 and not keyframe:
            problems.append(f"scale {self.scale}: only the keyframe variants resize their frames")
        return problems + self._propagate_problems()

    def _propagate_problems(self) -> list[str]:
        """What `keyframe-tome` needs: `scale` below 1 exactly when it has a `redundancy` fallback, a CLS for WAP's
        query, a position table (a merged token has no one rotary position), single frames, no levels, and merges
        ToMe can make at the config's frame size."""
        if not VARIANTS.get(self.temporal).propagate:
            return [f"{name}: only the keyframe-tome variant has it" for name, value in
                    (("merge", self.merge), ("redundancy", self.redundancy)) if value]
        fallback = "scale below 1 with redundancy (the size of the frames that skip ToMe)" if self.redundancy else \
            "scale 1 without redundancy (it reads its key frames whole)"
        needs = {fallback: (self.scale < 1) == bool(self.redundancy), "a CLS token": self.cls_token,
                 "a learned position table, not rope_theta": self.rope_theta is None,
                 "temporal_patch 1": self.temporal_patch == 1, "levels 0": self.levels == 0}
        problems = [f"keyframe-tome needs {need}" for need, ok in needs.items() if not ok]
        if self.merge and len(self.merge) != self.depth:
            problems.append(f"merge has {len(self.merge)} counts for {self.depth} blocks")
        left = (self.image // self.patch) ** 2
        for i, r in enumerate(self.merge, start=1):
            if not 0 <= r <= left // 2:
                problems.append(f"merge: block {i} cannot merge {r} of its {left} patch tokens (at most half)")
                break
            left -= r
        return problems

    def _split(self) -> tuple[Stride, ...]:
        """The block as the variant's two downsamplings (one may be (1, 1, 1)); `()` for `none`."""
        kind = VARIANTS.get(self.temporal).compress
        if kind == "none" or VARIANTS.get(self.temporal).propagate:  # `keyframe-tome` embeds its key frames alone
            return ()
        block = self.compression.block
        if kind == "keyframe":
            return ((block[0], 1, 1),)
        if kind == "space":
            t, h, w = block
            root = math.isqrt(t)
            if root * root != t:
                raise ValueError(f"variant {self.temporal!r} spends the clip of {t} frames on space, which needs "
                                 f"a square number of frames")
            block = (1, h * root, w * root)
        first = tuple(2 if n % 2 == 0 else 1 for n in block)
        return first, tuple(n // f for n, f in zip(block, first))

    @property
    def stages(self) -> tuple[tuple[int, Stride], ...]:
        """`(block, stride)` of each downsampling the model builds: after 1-based block `block` (0: right after
        the patch embedding, where `keyframe` merges its frames)."""
        after = (0,) if VARIANTS.get(self.temporal).compress == "keyframe" else self.downsample_after
        return tuple((i, s) for i, s in zip(after, self._split()) if s != (1, 1, 1))

    @property
    def frame_size(self) -> int:
        """The side an `image` px frame is resized to before the patch embedding (`scaled_side`); `keyframe-tome`
        reads its key frames whole (those that skip ToMe are resized, with their own table `small_pos_embed`)."""
        whole = VARIANTS.get(self.temporal).propagate
        return scaled_side(self.image, 1.0 if whole else self.scale, self.patch)

    @property
    def compresses(self) -> bool:
        """Whether the output grid is compressed (all but the `none` variant, which distils without compression)."""
        return VARIANTS.get(self.temporal).compress != "none"

    @property
    def strides(self) -> tuple[Stride, ...]:
        return tuple(s for _, s in self.stages)

    @property
    def block(self) -> Stride:
        """The compression block of the output grid `(t, h, w)`: the strides' product ((1, 1, 1) for `none`), or
        for `keyframe` the compression block, whose space `scale` and the output's resampling take."""
        if VARIANTS.get(self.temporal).compress == "keyframe":
            return self.compression.block
        return tuple(math.prod(s[k] for s in self.strides) for k in range(3))

    def to_dict(self) -> dict:
        """JSON-ready; the compression as its block `[t, h, w]`."""
        return {**asdict(self), "compression": list(self.compression.block)}

    @classmethod
    def from_dict(cls, data: dict) -> LiteFrameConfig:
        """Inverse of `to_dict`. A config.json written before the compression field (with `clip_frames: 4`) loads
        as 16x."""
        data = dict(data)
        compression = get_compression(data.get("compression"))
        clip = data.pop("clip_frames", compression.clip)
        if clip != compression.clip:
            raise InputError(f"LiteFrame config: clip_frames {clip} does not match compression {compression}")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"LiteFrame config has unknown keys {sorted(unknown)}")
        return cls(**{**data, "compression": compression})


def scaled_side(side: int, scale: float, patch: int) -> int:
    """`side * scale` rounded to a whole number of patches, at least one."""
    return max(1, round(side * scale / patch)) * patch


def prefix_tokens(config: LiteFrameConfig) -> int:
    """Tokens before the patches in every frame: the CLS and the registers."""
    return int(config.cls_token) + config.registers


# Named configs (`create_student(name)`). The tiny ones crop from `tiny_vision_config("internvl")` (width 64,
# 6 blocks, 56 px): 3 blocks of width 32, 2 heads of 16, downsampling after blocks 1 and 2.
# `liteframe-qwen2.5` is Qwen2.5-VL's ViT (32 blocks of width 1280, 16 heads of 80, SwiGLU 3420) by the paper's
# ratios (`student_for`): 16 blocks, 12 heads (width 960), SwiGLU 2565, downsampling after blocks 5 and 11, read at a
# 448 px square; its tiny one crops from `liteframe.testing.qwen_config("tiny")` (2 blocks of width 32, 2 heads).
STUDENTS: Registry[LiteFrameConfig] = Registry("LiteFrame student")
_B = LiteFrameConfig(teacher="internvl_vision")
_TINY = replace(_B, width=32, depth=3, heads=2, mlp=64, image=56, out_dim=64, downsample_after=(1, 2))
_QWEN = LiteFrameConfig(width=960, depth=16, heads=12, mlp=2565, out_dim=1280, downsample_after=(5, 11),
                        act="silu", cls_token=False, norm="rmsnorm", gated_mlp=True,
                        rope_theta=10000.0, temporal_patch=2, teacher="qwen2_5_vl_vision")
_QWEN_TINY = replace(_QWEN, width=16, depth=2, heads=1, mlp=32, image=112, out_dim=32, downsample_after=(1, 2))
# `liteframe-qwen3.5` is Qwen3.5's and Qwen3-VL-8B's tower (27 blocks of width 1152, 16 heads of 72, GELU MLP 4304,
# a 48 x 48 position grid) by the paper's ratios: 13 blocks, 12 heads (width 864), MLP 3228, downsampling after
# blocks 4 and 9, at 448 px (512 px at 64x: 448 px is 28 patches, which the 4 x 4 stride and the merger's 2 x 2 do
# not divide). Its tiny one crops from `liteframe.testing.qwen3.tiny_config` (3 blocks of width 32, 2 heads, an
# 8 x 8 grid), at 128 px.
_QWEN3 = LiteFrameConfig(width=864, depth=13, heads=12, mlp=3228, out_dim=1152, downsample_after=(4, 9),
                         act="gelu_pytorch_tanh", cls_token=False, patch=16, rope_theta=10000.0, pos_grid=48,
                         temporal_patch=2, teacher="qwen3_5_vision")
_QWEN3_TINY = replace(_QWEN3, width=16, depth=2, heads=1, mlp=32, image=128, out_dim=32, downsample_after=(1, 2),
                      pos_grid=8)
# `liteframe-qwen3-vl` is the same from Qwen3-VL-8B's tower, whose DeepStack mergers read blocks 8, 16 and 24: its
# last 3 blocks (11-13, after the last downsampling) give the levels. The tiny Qwen3-VL's mergers read 2 blocks, so its
# student has 4 blocks (the last 2 tapped, cropped from the teacher's last).
_QWEN3_VL = replace(_QWEN3, levels=3, teacher="qwen3_vl_vision")
_QWEN3_VL_TINY = replace(_QWEN3_TINY, depth=4, levels=2, teacher_layers=(0, 1, 2, 2), teacher="qwen3_vl_vision")
# a side the 64x strides and the merger divide, where the default does not
_SIZE_64X = {"liteframe-qwen3.5": 512, "liteframe-qwen3-vl": 512}
for _name, _base in (("liteframe-b", _B), ("liteframe-tiny", _TINY), ("liteframe-qwen2.5", _QWEN),
                     ("liteframe-qwen2.5-tiny", _QWEN_TINY), ("liteframe-qwen3.5", _QWEN3),
                     ("liteframe-qwen3.5-tiny", _QWEN3_TINY), ("liteframe-qwen3-vl", _QWEN3_VL),
                     ("liteframe-qwen3-vl-tiny", _QWEN3_VL_TINY)):
    for _ratio in (16, 4, 64):
        _size = {"image": _SIZE_64X[_name]} if _ratio == 64 and _name in _SIZE_64X else {}
        STUDENTS.register(_name + ("" if _ratio == 16 else f"-{_ratio}x"))(replace(_base, compression=_ratio,
                                                                                   **_size))


def student_config(name: str = "liteframe-b", **overrides) -> LiteFrameConfig:
    """The named config with `overrides` (any `LiteFrameConfig` field), e.g. `student_config("liteframe-tiny",
    temporal="conv", compression=64)`."""
    try:
        return replace(STUDENTS.get(name), **overrides)
    except TypeError as err:  # an unknown field
        raise InputError(f"student {name}: {err}") from None
