"""The ViT pieces LiteFrame blocks and temporal mixers share: attention through SDPA and the MLP."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection: `(N, L, C) -> (N, L, C)`."""

    def __init__(self, width: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, c = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        # strided views with a contiguous last dimension: all the flash and memory-efficient kernels ask (in bf16 or
        # fp16, head dim <= 256), so no copies are made for them
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(n, length, c))


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
