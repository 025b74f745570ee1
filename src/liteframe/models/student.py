"""LiteFrame: a ViT-B/14 video encoder that compresses inside the network (SPEC 4).

Frames are encoded in clips of `compression.clip` (4 at 16x) consecutive grid steps: temporal mixing and temporal
downsampling act within a clip, as in training on 4-frame clips, so a long video is a batch of independent clips
*(ours)*. A grid step is a frame, or a frame pair for a student of Qwen2.5-VL's ViT (`temporal_patch` 2), whose
blocks are Qwen's (RMSNorm, SwiGLU, 2-D rotary positions recomputed for the grid each block sees, attention over the
whole frame pair: no windows). The config and the named configs live in `config.py`.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InputError
from ..grid import TokenGrid
from ..io import atomic_folder
from ..reduce.wap import wap
from .config import LiteFrameConfig, prefix_tokens, scaled_side, student_config
from .crop import crop_state_dict
from .layers import Attention, GatedMlp, Mlp, Rope, rope_2d
from .merge import TokenMerge, redundancy
from .mixers import VARIANTS, Downsample, Propagate, key_frame, own_layout_grad
from .teacher import Teacher

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


class Block(nn.Module):
    """Pre-norm ViT block with LayerScale, plus the variant's temporal residual branch after attention.
    `(N, t, prefix + P, C) -> (N, t, prefix + P, C)` for N clips of t grid steps; the branch sees patch tokens only.
    `rope`: the rotary positions of one step's tokens, where the config has them."""

    def __init__(self, cfg: LiteFrameConfig):
        super().__init__()
        variant = VARIANTS.get(cfg.temporal)
        self.joint = variant.joint
        self.prefix = prefix_tokens(cfg)
        self.norm1 = _norm(cfg)
        self.attn = Attention(cfg.width, cfg.heads, cfg.qkv_bias)
        self.ls1 = nn.Parameter(torch.full((cfg.width,), cfg.layerscale))
        self.mixer = variant.mixer(cfg.width, cfg.heads, cfg.kernel) if variant.mixer else None
        self.norm2 = _norm(cfg)
        self.mlp = (GatedMlp if cfg.gated_mlp else Mlp)(cfg.width, cfg.mlp, cfg.act)
        self.ls2 = nn.Parameter(torch.full((cfg.width,), cfg.layerscale))

    def forward(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        n, t, length, c = x.shape
        seq = x.reshape(n, t * length, c) if self.joint else x.reshape(n * t, length, c)
        if rope is not None and self.joint:  # a clip's steps in one sequence: each step's positions again
            rope = tuple(r.repeat(t, 1) for r in rope)
        x = (seq + self.ls1 * self.attn(self.norm1(seq), rope)).view(n, t, length, c)
        if self.mixer is not None and t > 1:  # nothing to mix across a single frame
            p = self.prefix
            x = torch.cat([x[:, :, :p], x[:, :, p:] + self.mixer(x[:, :, p:])], dim=2)
        return x + self.ls2 * self.mlp(self.norm2(x))

    def forward_merging(self, x: torch.Tensor, merging: TokenMerge, r: int) -> torch.Tensor:
        """`forward` of single frames `(N, 1, L, C) -> (N, 1, L - r, C)` with ToMe after the attention, as ToMe places
        it: attention in proportion to the tokens' sizes, `r` tokens merged by their keys, then the MLP."""
        seq = x[:, 0]
        y, keys = self.attn.attend(self.norm1(seq), bias=merging.bias())
        seq = merging.merge(seq + self.ls1 * y, keys, r)
        return (seq + self.ls2 * self.mlp(self.norm2(seq)))[:, None]


class LiteFrameEncoder(nn.Module):
    """`(B, T, 3, S, S) -> TokenGrid (B, T/(tp*st), S/(14*sh), S/(14*sw), out_dim)` with one CLS per output step
    (when `cls_token`), for the strides' product (st, sh, sw) and `temporal_patch` tp; for the default `dwconv` at 16x
    that is `(B, T/4, S/28, S/28, 1024)`. T must be a multiple of `compression.clip * temporal_patch`. Tokens: [CLS]
    [registers] patches, positions on CLS and patches, as in DINOv2; or patches alone with rotary positions (and
    Qwen3's resized position grid). With `levels` the grid has that many levels of its shape: the outputs of the
    last blocks through the same head (Qwen3-VL's DeepStack features). `keyframe-tome` merges tokens in its blocks
    (`config.merge`), carries its key frame's tokens to the clip's frames and pools them by WAP with its own CLS."""

    def __init__(self, config: LiteFrameConfig | None = None):
        super().__init__()
        self.config = cfg = config or LiteFrameConfig()
        grid = cfg.frame_size // cfg.patch
        if cfg.temporal_patch > 1:  # Qwen's: one patch spans a frame pair
            kernel = (cfg.temporal_patch, cfg.patch, cfg.patch)
            self.patch_embed = nn.Conv3d(3, cfg.width, kernel, stride=kernel)
        else:
            self.patch_embed = nn.Conv2d(3, cfg.width, cfg.patch, stride=cfg.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width)) if cfg.cls_token else None
        self.register_tokens = nn.Parameter(torch.zeros(1, cfg.registers, cfg.width)) if cfg.registers else None
        table = cfg.pos_grid ** 2 if cfg.pos_grid else None if cfg.rope_theta is not None else \
            int(cfg.cls_token) + grid * grid
        self.pos_embed = None if table is None else nn.Parameter(torch.zeros(1, table, cfg.width))
        # `keyframe-tome`'s key frames that skip ToMe are read at `scale`: the tower's own table at that size
        small = scaled_side(cfg.image, cfg.scale, cfg.patch) // cfg.patch
        self.small_pos_embed = nn.Parameter(torch.zeros(1, int(cfg.cls_token) + small * small, cfg.width)) \
            if cfg.redundancy else None
        for p in (self.cls_token, self.register_tokens, self.pos_embed, self.small_pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        self.embed_norm = _norm(cfg) if cfg.embed_norm else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        keyframe = VARIANTS.get(cfg.temporal).compress == "keyframe"
        self.downsample = nn.ModuleList(Downsample(cfg.width, s, prefix_tokens(cfg), keyframe) for s in cfg.strides)
        self.propagate = Propagate() if VARIANTS.get(cfg.temporal).propagate else None
        self.final_norm = _norm(cfg) if cfg.final_norm else None
        self.head = nn.Linear(cfg.width, cfg.out_dim)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations in the backward pass (training memory for compute)."""
        self.grad_checkpointing = enabled

    def forward(self, pixels: torch.Tensor) -> TokenGrid:
        cfg = self.config
        b, t, _, height, width = pixels.shape
        self._check_shape(t, height, width)
        steps, tp = t // cfg.temporal_patch, cfg.temporal_patch
        frames = pixels.flatten(0, 1).to(self.patch_embed.weight.dtype)
        if self.propagate is not None:
            return self._forward_keyframes(frames.unflatten(0, (-1, cfg.compression.clip)), b)
        if cfg.scale != 1:
            frames = self._resized(frames, cfg.scale)
        if tp > 1:  # a step's frames side by side in the Conv3d's time axis: (B*T/tp, 3, tp, S, S)
            frames = frames.unflatten(0, (b * steps, tp)).transpose(1, 2)
        x, h, w = self._tokens(self.patch_embed(frames))  # (B*steps, prefix + h*w, C)
        clip, prefix = cfg.compression.clip, prefix_tokens(cfg)
        x = x.view(b * steps // clip, clip, prefix + h * w, cfg.width)
        after = {i: down for (i, _), down in zip(cfg.stages, self.downsample)}
        if 0 in after:
            x, h, w = after[0](x, h, w)
        rope = self._rope(h, w, x.device)
        taps = []  # the last blocks' outputs, the levels' features
        for i, block in enumerate(self.blocks, start=1):
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope)
            if i in after:
                x, h, w = after[i](x, h, w)
                rope = self._rope(h, w, x.device)
            if i > cfg.depth - cfg.levels:
                taps.append(x)
        x = self.head(self._final(x))
        cls = x[:, :, 0].reshape(b, -1, cfg.out_dim) if cfg.cls_token else None
        out = (height // (cfg.patch * cfg.block[1]), width // (cfg.patch * cfg.block[2]))

        def grid(y: torch.Tensor) -> torch.Tensor:  # `scale` took the block's space: area-resample to its grid
            y = y[:, :, prefix:].reshape(b, -1, h, w, cfg.out_dim)
            if (h, w) == out:
                return y
            y = F.adaptive_avg_pool2d(y.flatten(0, 1).permute(0, 3, 1, 2), out)
            return y.permute(0, 2, 3, 1).unflatten(0, (b, -1))

        return TokenGrid(grid(x), cls, levels=tuple(grid(self.head(tap)) for tap in taps))

    def _forward_keyframes(self, clips: torch.Tensor, b: int) -> TokenGrid:
        """`keyframe-tome`: `(N, t, 3, S, S)` clips -> grid `(b, N/b, S/(p*h), S/(p*w), out)`. Each clip's key frame
        goes whole through the merging blocks, its tokens are carried to the clip's frames and pooled by WAP with
        its CLS; a key frame whose patches have no near twins (`merge.redundancy` below `config.redundancy`), where
        ToMe's merges lose the most, goes through the blocks at `scale` without merges, its tokens area-resampled to
        the grid. On the meta device (FLOP counts) every clip takes the merging path, the costlier one. Never
        checkpointed: a recomputed block would merge its tokens twice."""
        cfg = self.config
        prefix = prefix_tokens(cfg)
        emb = self.patch_embed(clips[:, key_frame(clips.shape[1])])  # (N, C, h, w)
        h, w = emb.shape[-2:]
        out = (h // cfg.block[1], w // cfg.block[2])
        patches = emb.new_empty(len(emb), 1, *out, cfg.out_dim)
        cls = emb.new_empty(len(emb), 1, cfg.out_dim)
        spread = redundancy(emb) < cfg.redundancy if cfg.redundancy else None
        if spread is None or emb.is_meta:
            merged, whole = slice(None), None
        else:  # one host sync: which clips take which path
            merged, whole = (~spread).nonzero()[:, 0], spread.nonzero()[:, 0]
        if whole is None or len(merged):
            x, _, _ = self._tokens(emb[merged])
            merging = TokenMerge(x, prefix)
            x = x[:, None]
            for block, r in zip(self.blocks, cfg.merge or (0,) * cfg.depth):
                x = block.forward_merging(x, merging, r)
            x = self.head(self._final(merging.unmerge(x[:, 0])))
            carried = self.propagate(clips[merged], x[:, prefix:].unflatten(1, (h, w)))
            patches[merged] = wap(carried, x[:, None, 0].expand(-1, carried.shape[1], -1), cfg.block, check=False)
            cls[merged] = x[:, None, 0]
        if whole is not None and len(whole):
            key = self._resized(clips[whole, key_frame(clips.shape[1])], cfg.scale)
            x, h2, w2 = self._tokens(self.patch_embed(key), self.small_pos_embed)
            x = x[:, None]
            for block in self.blocks:
                x = block(x)
            x = self.head(self._final(x[:, 0]))
            small = x[:, prefix:].unflatten(1, (h2, w2)).permute(0, 3, 1, 2)
            patches[whole] = F.adaptive_avg_pool2d(small, out).permute(0, 2, 3, 1)[:, None]
            cls[whole] = x[:, None, 0]
        return TokenGrid(patches.reshape(b, -1, *out, cfg.out_dim), cls.reshape(b, -1, cfg.out_dim))

    def _resized(self, frames: torch.Tensor, scale: float) -> torch.Tensor:
        """`(n, 3, H, W)` frames resized by `scale` to whole patches, as `scaled_side` rounds."""
        size = tuple(scaled_side(n, scale, self.config.patch) for n in frames.shape[-2:])
        return F.interpolate(frames, size=size, mode="bicubic", antialias=True, align_corners=False)

    def _tokens(self, emb: torch.Tensor, table: torch.Tensor | None = None) -> tuple[torch.Tensor, int, int]:
        """Patch embeddings `(n, C, [1,] h, w)` -> the first block's input `(n, prefix + h*w, C)`, h, w: [CLS]
        [registers] patches, with the position table where there is one (`table`: another than `pos_embed`)."""
        cfg, n = self.config, emb.shape[0]
        h, w = emb.shape[-2:]
        x = emb.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            # (`own_layout_grad`: with one clip the expand is a view, whose gradient would take x's strides)
            x = torch.cat([own_layout_grad(self.cls_token).expand(n, -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self._pos_embed(h, w, table)
        if self.register_tokens is not None:
            x = torch.cat([x[:, :cfg.cls_token], self.register_tokens.expand(n, -1, -1), x[:, cfg.cls_token:]], 1)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        return x, h, w

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.final_norm is None else self.final_norm(x)

    def _check_shape(self, t: int, height: int, width: int) -> None:
        cfg = self.config
        clip = cfg.compression.clip * cfg.temporal_patch
        if t % clip:
            raise ValueError(f"LiteFrame encodes clips of {clip} frames: got T = {t} frames, "
                             f"not a multiple of {clip}")
        sh, sw = cfg.block[1] * cfg.patch, cfg.block[2] * cfg.patch
        if height % sh or width % sw:
            raise ValueError(f"LiteFrame {cfg.temporal!r} needs frames whose height is a multiple of {sh} and "
                             f"width a multiple of {sw}, got {height} x {width}")

    def _rope(self, h: int, w: int, device: torch.device) -> Rope | None:
        """The rotary positions of an `h x w` grid, for the grid the blocks see (recomputed after each
        downsampling: its tokens sit at the new grid's rows and columns, as for a frame of that size); None for a
        student with a learned table."""
        cfg = self.config
        return rope_2d(h, w, cfg.width // cfg.heads, cfg.rope_theta, device) if cfg.rope_theta is not None else None

    def _pos_embed(self, h: int, w: int, table: torch.Tensor | None = None) -> torch.Tensor:
        """`(1, [1 +] h*w, C)`: the learned embeddings (`table`, or `pos_embed`), bicubically resized when the grid
        differs (as transformers); Qwen3's grid (`pos_grid`) bilinearly with aligned corners, as its tower resizes it
        for every input."""
        pos = self.pos_embed if table is None else table
        cls, resample = int(self.config.cls_token), bool(self.config.pos_grid)
        side = math.isqrt(pos.shape[1] - cls)
        if (h, w) == (side, side):
            return pos
        grid = pos[:, cls:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bilinear" if resample else "bicubic", align_corners=resample)
        return torch.cat([pos[:, :cls], grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)

    @classmethod
    def from_teacher(cls, teacher, config: LiteFrameConfig | None = None) -> LiteFrameEncoder:
        """Crop init (SPEC 4) from a `Teacher` or a teacher checkpoint folder; see `crop.py`."""
        if not isinstance(teacher, Teacher):
            teacher = Teacher.from_pretrained(teacher)
        config = config or LiteFrameConfig()
        if not config.teacher:  # the student records the tower it is cropped from
            config = replace(config, teacher=teacher.vision.config.model_type)
        model = cls(config)
        state = crop_state_dict(teacher.vision, model.config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        untouched = [k for k in missing if not k.startswith(("downsample.", "propagate.")) and ".mixer." not in k]
        if untouched or unexpected:
            raise RuntimeError(f"crop init left {untouched} unset and produced unknown {unexpected}")
        return model

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` as `folder`, swapped in whole (`liteframe.io.atomic_folder`):
        a reader, even after a crash mid-save, never sees new weights with an old config."""
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}

        def write(tmp: Path) -> None:
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")

        atomic_folder(folder, write, names=(CONFIG_NAME, WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, dtype: torch.dtype | None = None,
                        device: torch.device | str | None = None) -> LiteFrameEncoder:
        """Load a folder written by `save_pretrained`; bad or mismatched files raise `InputError`."""
        folder = Path(folder)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise InputError(f"{folder}: not a LiteFrame checkpoint folder (no {name})")
        try:
            config = LiteFrameConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise InputError(f"{folder / CONFIG_NAME}: bad LiteFrame config: {err}") from None
        with torch.device("meta"):
            model = cls(config)
        try:
            state = load_file(str(folder / WEIGHTS_NAME))
        except (OSError, SafetensorError) as err:
            raise InputError(f"{folder / WEIGHTS_NAME}: not a readable safetensors file "
                             f"({' '.join(str(err).split())})") from None
        expected = model.state_dict()
        missing, unknown = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unknown:
            raise InputError(f"{folder / WEIGHTS_NAME}: tensors do not match the config: "
                             f"missing {missing[:3]}, unexpected {unknown[:3]}")
        for key, tensor in state.items():
            if tensor.shape != expected[key].shape:
                raise InputError(f"{folder / WEIGHTS_NAME}: tensor {key} has shape {tuple(tensor.shape)} but the "
                                 f"config expects {tuple(expected[key].shape)}")
        model.load_state_dict(state, assign=True)
        return model.to(device=device, dtype=dtype)

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """AdamW parameter groups, nanoGPT's way: weight decay on matrices and kernels only, none on biases, norms,
        LayerScale and the embeddings (the position table, the CLS and register tokens)."""
        embeddings = ("pos_embed", "small_pos_embed", "cls_token", "register_tokens")
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 and name not in embeddings else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _norm(cfg: LiteFrameConfig) -> nn.Module:
    """The teacher's kind of norm at the student's width."""
    return nn.RMSNorm(cfg.width, eps=cfg.eps) if cfg.norm == "rmsnorm" else nn.LayerNorm(cfg.width, eps=cfg.eps)


def create_student(name: str = "liteframe-b", **overrides) -> LiteFrameEncoder:
    """A randomly initialised student from a named config (`config.STUDENTS`) with `overrides`, e.g.
    `create_student("liteframe-tiny", compression=64)`; crop init: `LiteFrameEncoder.from_teacher(teacher,
    student_config(name, **overrides))`."""
    return LiteFrameEncoder(student_config(name, **overrides))
