"""The ViT pieces LiteFrame blocks and temporal mixers share: attention through SDPA (with Qwen's 2-D rotary
positions where the teacher has them) and the MLPs (plain, or SwiGLU as Qwen's ViT has it)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

Rope = tuple[torch.Tensor, torch.Tensor]  # cos, sin (L, head_dim) in float32


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection: `(N, L, C) -> (N, L, C)`."""

    def __init__(self, width: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        """`rope`: rotary positions of the L tokens, turning queries and keys (transformers' Qwen2.5-VL function)."""
        return self.attend(x, rope)[0]

    def attend(self, x: torch.Tensor, rope: Rope | None = None, bias: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward`, with `bias (N, 1, 1, L)` added to every score (ToMe's proportional attention), and the keys
        `(N, heads, L, d)`, which ToMe compares."""
        n, length, c = x.shape
        if rope is None:
            q, k, v = self.qkv(x).view(n, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        else:
            q, k, v = self.qkv(x).view(n, length, 3, self.heads, c // self.heads).unbind(2)
            q, k = apply_rotary_pos_emb_vision(q, k, *rope)  # (N, L, heads, d): cos and sin broadcast over heads
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        # strided views with a contiguous last dimension: all the flash and memory-efficient kernels ask (in bf16 or
        # fp16, head dim <= 256), so no copies are made for them
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype))
        return self.proj(y.transpose(1, 2).reshape(n, length, c)), k


class Mlp(nn.Module):
    """`(..., C) -> (..., C)` through a hidden layer of width `hidden` with the teacher's activation `act` (a
    transformers name: "gelu" is exact GELU, CLIP's "quick_gelu", SigLIP's "gelu_pytorch_tanh")."""

    def __init__(self, width: int, hidden: int, act: str = "gelu"):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = ACT2FN[act]
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GatedMlp(nn.Module):
    """SwiGLU, as Qwen's ViT has it: `fc2(act(gate(x)) * up(x))`, with gate and up fused in `fc1` (gate first)."""

    def __init__(self, width: int, hidden: int, act: str = "silu"):
        super().__init__()
        self.fc1 = nn.Linear(width, 2 * hidden)
        self.act = ACT2FN[act]
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(self.act(gate) * up)


def rope_2d(h: int, w: int, head_dim: int, theta: float, device: torch.device | str | None = None) -> Rope:
    """Qwen's axial 2-D rotary positions at the tokens of an `h x w` grid in raster order -> cos, sin
    `(h*w, head_dim)`: a quarter of the frequencies turn with the row, a quarter with the column (the rows' first),
    and channel i pairs with channel i + head_dim/2, as `Qwen2_5_VLVisionRotaryEmbedding` computes them."""
    half = head_dim // 2
    inv_freq = 1.0 / theta ** (torch.arange(0, half, 2, dtype=torch.float32, device=device) / half)
    rows = torch.arange(h, dtype=torch.float32, device=device).repeat_interleave(w)
    cols = torch.arange(w, dtype=torch.float32, device=device).repeat(h)
    angles = torch.cat([rows[:, None] * inv_freq, cols[:, None] * inv_freq], dim=-1)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()
