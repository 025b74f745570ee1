"""The LiteFrame variants of SPEC 4 by name: which temporal mixer each block has, whether spatial attention
spans the whole clip, and how the model spends the compression block (its strides: `config.py`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from .layers import Attention

Stride = tuple[int, int, int]  # (time, height, width)


def own_layout_grad(weight: torch.Tensor) -> torch.Tensor:
    """`weight` itself (a view), routed so that its gradient comes back in the weight's own strides.

    A convolution over a channels-last view returns a depth-wise weight's gradient with other strides on the
    size-1 dimensions; DDP compares strides exactly, warns "Grad strides do not match bucket view strides" and
    copies every step. The backward of `squeeze` re-inserts size-1 dimensions with canonical strides."""
    return weight.squeeze().view(weight.shape)


class TemporalConv(nn.Module):
    """Residual branch along time at each spatial position: `(N, t, P, C) -> (N, t, P, C)`.
    Depth-wise when `groups == width`; starts at zero so the untrained block is the plain ViT block."""

    def __init__(self, width: int, kernel: int = 3, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=groups)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, t, P, C) read as (N, C, t, P) is a channels-last image: the Conv1d weight as a (k, 1) Conv2d runs
        # on it without the two transposing copies a (N*P, C, t) Conv1d input needs (4x faster on CPU)
        conv = self.conv
        y = F.conv2d(x.permute(0, 3, 1, 2), own_layout_grad(conv.weight).unsqueeze(-1), conv.bias,
                     padding=(conv.padding[0], 0), groups=conv.groups)
        return y.permute(0, 2, 3, 1)


class TemporalAttention(nn.Module):
    """Residual pre-norm self-attention across time at each spatial position: `(N, t, P, C) -> (N, t, P, C)`.
    The output projection starts at zero, like the convolutions, so the untrained block is the plain ViT block."""

    def __init__(self, width: int, heads: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads)
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, p, c = x.shape
        y = self.attn(self.norm(x.transpose(1, 2).reshape(n * p, t, c)))
        return y.view(n, p, t, c).transpose(1, 2)


class Downsample(nn.Module):
    """Depth-wise Conv3d with kernel = stride over (time, height, width) of the patch tokens; the `prefix` tokens
    (CLS, registers) of merged frames are averaged. `(N, t, prefix + h*w, C) -> (N, t/st, prefix + (h/sh)*(w/sw), C)`.
    Starts as exact average pooling (weight 1/(st*sh*sw), bias 0), or with `keyframe` as picking the key frame
    `key_frame(st)` of each window (averaging blurs moving frames, which the features of one sharp frame beat)."""

    def __init__(self, width: int, stride: Stride, prefix: int = 1, keyframe: bool = False):
        super().__init__()
        self.stride, self.prefix = tuple(stride), prefix
        self.conv = nn.Conv3d(width, width, self.stride, stride=self.stride, groups=width)
        nn.init.zeros_(self.conv.bias)
        with torch.no_grad():
            if keyframe:
                self.conv.weight.zero_()[:, :, key_frame(stride[0])] = 1.0 / (stride[1] * stride[2])
            else:
                self.conv.weight.fill_(1.0 / (stride[0] * stride[1] * stride[2]))

    def forward(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, int, int]:
        n, t, _, c = x.shape
        conv, p = self.conv, self.prefix
        patches = F.conv3d(x[:, :, p:].reshape(n, t, h, w, c).permute(0, 4, 1, 2, 3), own_layout_grad(conv.weight),
                           conv.bias, stride=conv.stride, groups=conv.groups)
        t2, h2, w2 = patches.shape[2:]
        patches = patches.permute(0, 2, 3, 4, 1).reshape(n, t2, h2 * w2, c)
        prefix = x[:, :, :p].reshape(n, t2, self.stride[0], p, c).mean(dim=2)
        return torch.cat([prefix, patches], dim=2), h2, w2


def key_frame(clip: int) -> int:
    """The frame of a clip a keyframe student reads: the middle one, the earlier of two (DINOv2-S's second frame
    of four stands for its clip a little better than the third: 0.924 against 0.910 WAP cosine, reproduction.md)."""
    return (clip - 1) // 2


class Propagate(nn.Module):
    """The key frame's tokens carried to every frame of its clip *(ours)*, as a codec's motion compensation: each
    patch of another frame takes the softmax-weighted mean of the key frame's tokens within `RADIUS` patches,
    scored by how alike the two patches look (cosine of their centred 7 x 7 colour thumbnails) less `distance` per
    patch apart, over `temperature` (both learned, as logs where they must stay positive).
    `(N, t, 3, h*p, w*p)` frames, `(N, h, w, C)` key tokens -> `(N, t, h, w, C)`."""

    RADIUS = 2  # a 5 x 5 window: on the reproduction's clips, wider windows change the cosine by under 0.001

    def __init__(self, temperature: float = 0.05, distance: float = 0.1):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.distance = nn.Parameter(torch.tensor(distance))

    def forward(self, frames: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        n, t = frames.shape[:2]
        _, h, w, _ = tokens.shape
        key, side, r = key_frame(t), 2 * self.RADIUS + 1, self.RADIUS

        def windows(x: torch.Tensor) -> torch.Tensor:  # (N, h, w, X) -> (N, h*w, side^2, X), zeros off the frame
            padded = F.pad(x, (0, 0, r, r, r, r))  # the offsets are kernel taps: 25 strided views, row-contiguous
            return torch.stack([padded[:, dy:dy + h, dx:dx + w] for dy in range(side) for dx in range(side)], 3
                               ).flatten(1, 2)

        frames = frames.flatten(0, 1).to(torch.promote_types(frames.dtype, torch.float32))
        thumbs = F.unfold(F.adaptive_avg_pool2d(frames, (7 * h, 7 * w)), 7, stride=7).transpose(1, 2)
        thumbs = F.normalize(thumbs - thumbs.mean(-1, keepdim=True), dim=-1).unflatten(0, (n, t))  # (N, t, h*w, D)
        others = thumbs[:, [i for i in range(t) if i != key]].transpose(1, 2)  # (N, h*w, t-1, D)
        scores = others @ windows(thumbs[:, key].unflatten(1, (h, w))).mT  # (N, h*w, t-1, side^2)
        offsets = torch.arange(side, dtype=scores.dtype, device=scores.device) - r
        apart = torch.hypot(offsets[:, None], offsets[None, :]).flatten()
        inside = windows(scores.new_ones(1, h, w, 1))[..., None, :, 0] > 0  # (1, h*w, 1, side^2): in the frame
        scores = (scores - self.distance * apart).div(self.log_temperature.exp()).masked_fill(~inside, -math.inf)
        moved = scores.softmax(-1).to(tokens.dtype) @ windows(tokens)  # (N, h*w, t-1, C)
        moved = moved.transpose(1, 2).unflatten(2, (h, w))
        return torch.cat([moved[:, :key], tokens[:, None], moved[:, key:]], dim=1)


@dataclass(frozen=True)
class Variant:
    """mixer(width, heads, kernel) builds one block's temporal residual branch (None: no temporal mixing);
    joint: spatial attention over all tokens of a clip instead of per frame; compress: "block" downsamples by the
    compression block, "space" spends its ratio on space alone, "none" keeps every token, "keyframe" merges the
    clip's frames once (starting as its key frame) and spends the block's space on the frame size
    (`LiteFrameConfig.scale`); `propagate`: the key frame's tokens are carried to every frame of the clip
    (`Propagate`) and pooled by WAP with the student's own CLS, and the blocks may merge tokens
    (`LiteFrameConfig.merge`)."""

    mixer: Callable[[int, int, int], nn.Module] | None
    compress: str = "block"
    joint: bool = False
    propagate: bool = False


VARIANTS: Registry[Variant] = Registry("LiteFrame variant")
VARIANTS.register("none")(Variant(None, compress="none"))
VARIANTS.register("dwconv")(Variant(lambda w, h, k: TemporalConv(w, k, groups=w)))
VARIANTS.register("conv")(Variant(lambda w, h, k: TemporalConv(w, k, groups=1)))
VARIANTS.register("tempattn")(Variant(lambda w, h, k: TemporalAttention(w, h)))
VARIANTS.register("stattn")(Variant(None, joint=True))
# spatial-only: every output token comes from one frame (SPEC 4), so nothing mixes frames either
VARIANTS.register("spatial16")(Variant(None, compress="space"))
# one frame per clip at a smaller size: the teacher's own blocks see a sharp frame at a scale they know *(ours)*
VARIANTS.register("keyframe")(Variant(None, compress="keyframe"))
# the key frame whole, ToMe inside the blocks, its tokens carried to the clip's frames and WAP-pooled *(ours)*
VARIANTS.register("keyframe-tome")(Variant(None, compress="keyframe", propagate=True))
