"""The transformers vision towers liteframe takes as teachers, and where each keeps what crop init reads.

One `Tower` per `model_type`: the class that loads a plain folder of it, the tokens before its patches (CLS,
DINOv2's registers), whether its final norm is part of its output, and the names of one block's weights. Every
block is a pre-norm ViT block (norm, attention, LayerScale, norm, MLP, LayerScale; CLIP, SigLIP and Qwen have no
LayerScale), so a LiteFrame block reads any of them. Qwen2.5-VL's ViT has RMSNorm, a fused qkv with 2-D rotary
positions, a SwiGLU MLP, patches over frame pairs and a merger into the LLM's width after its blocks (its output:
`liteframe.models.qwen`). Qwen3-VL's and Qwen3.5's tower (dense and MoE checkpoints alike) has LayerNorm, the fused
qkv with the same rotary positions, a GELU MLP, 16 px patches over frame pairs, a learned 48 x 48 position grid
resized to each input's patch grid, a merger, and for Qwen3-VL DeepStack mergers on some blocks' outputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from transformers import (CLIPVisionModel, Dinov2Model, Dinov2WithRegistersModel, InternVLVisionModel,
                          SiglipVisionModel)
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5VisionModel
from transformers.models.qwen3_5_moe.modeling_qwen3_5_moe import Qwen3_5MoeVisionModel
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel
from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import Qwen3VLMoeVisionModel

from .qwen import merged_grid, qwen3_grid

# our name -> the block weight's name in the tower (a `{i}` block index; `None`: the tower has none)
# transformers 5 names DINOv2's projections q/k/v/o_proj (it renames the hub's `attention.attention.query`... on load)
_DINOV2 = {"norm1": "norm1", "norm2": "norm2", "q": "attention.q_proj", "k": "attention.k_proj",
           "v": "attention.v_proj", "proj": "attention.o_proj", "ls1": "layer_scale1.lambda1",
           "ls2": "layer_scale2.lambda1", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
_CLIP = {"norm1": "layer_norm1", "norm2": "layer_norm2", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
         "v": "self_attn.v_proj", "proj": "self_attn.out_proj", "ls1": None, "ls2": None, "fc1": "mlp.fc1",
         "fc2": "mlp.fc2"}
# Qwen's projections are fused (`qkv`: q, k, v stacked) and its MLP gated (`gate`, `up`; `fc2` the down projection)
_QWEN = {"norm1": "norm1", "norm2": "norm2", "qkv": "attn.qkv", "proj": "attn.proj", "ls1": None, "ls2": None,
         "gate": "mlp.gate_proj", "up": "mlp.up_proj", "fc2": "mlp.down_proj"}
_QWEN3 = {"norm1": "norm1", "norm2": "norm2", "qkv": "attn.qkv", "proj": "attn.proj", "ls1": None, "ls2": None,
          "fc1": "mlp.linear_fc1", "fc2": "mlp.linear_fc2"}
_INTERNVIT = {"norm1": "layernorm_before", "norm2": "layernorm_after", "q": "attention.q_proj",
              "k": "attention.k_proj", "v": "attention.v_proj", "proj": "attention.projection_layer",
              "ls1": "lambda_1", "ls2": "lambda_2", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}


@dataclass(frozen=True)
class Tower:
    """`blocks`: the prefix of block i's weights; `block`: our name -> theirs; `embeddings`, `final_norm`,
    `embed_norm`, `merger`: module paths in the vision model (`final_norm` only where the tower's
    `last_hidden_state` has gone through it; `embed_norm` is CLIP's norm before the first block; `merger` Qwen's 2 x 2
    merger, whose output is the tower's; `encode` the function giving that output, `models.qwen`'s). `norm`,
    `gated_mlp`, `rope`: Qwen's RMSNorm, SwiGLU and rotary positions; `pos_table`: the weight of Qwen3's learned
    position grid, resized to every input. `square`: the side liteframe feeds a tower with no input size of its
    own (Qwen's reads any multiple of 28 or 32)."""

    model: type
    blocks: str
    block: dict[str, str | None]
    embeddings: str
    final_norm: str | None = None
    embed_norm: str | None = None
    has_cls: bool = True
    resizes_itself: bool = False  # positions resized to any input without `interpolate_pos_encoding=True`
    norm: str = "layernorm"
    gated_mlp: bool = False
    rope: bool = False
    square: int | None = None
    merger: str | None = None
    encode: Callable | None = None
    pos_table: str | None = None


TOWERS = {
    "internvl_vision": Tower(InternVLVisionModel, "encoder.layer.{i}.", _INTERNVIT, "embeddings", "layernorm",
                             resizes_itself=True),
    "dinov2": Tower(Dinov2Model, "encoder.layer.{i}.", _DINOV2, "embeddings", "layernorm", resizes_itself=True),
    "dinov2_with_registers": Tower(Dinov2WithRegistersModel, "encoder.layer.{i}.", _DINOV2, "embeddings",
                                   "layernorm", resizes_itself=True),
    # CLIP's post_layernorm acts on the pooled CLS only, not on `last_hidden_state`
    "clip_vision_model": Tower(CLIPVisionModel, "encoder.layers.{i}.", _CLIP, "embeddings",
                               embed_norm="pre_layrnorm"),
    "siglip_vision_model": Tower(SiglipVisionModel, "encoder.layers.{i}.", _CLIP,
                                 "embeddings", "post_layernorm", has_cls=False),
    # read as a 448 px square, the paper's size (its own processor keeps each frame's size and aspect ratio)
    "qwen2_5_vl_vision": Tower(Qwen2_5_VisionTransformerPretrainedModel, "blocks.{i}.", _QWEN, "patch_embed",
                               has_cls=False, resizes_itself=True, norm="rmsnorm", gated_mlp=True, rope=True,
                               square=448, merger="merger", encode=merged_grid),
    # the same tower in the four Qwen3 families' checkpoints (dense and MoE), read at the same square
    **{model_type: Tower(model, "blocks.{i}.", _QWEN3, "patch_embed", has_cls=False, resizes_itself=True, rope=True,
                         square=448, merger="merger", encode=qwen3_grid, pos_table="pos_embed.weight")
       for model_type, model in (("qwen3_vl_vision", Qwen3VLVisionModel),
                                 ("qwen3_vl_moe_vision", Qwen3VLMoeVisionModel),
                                 ("qwen3_5_vision", Qwen3_5VisionModel),
                                 ("qwen3_5_moe_vision", Qwen3_5MoeVisionModel))},
}
# model_type of a plain folder -> the tower's own model_type (a full CLIP or SigLIP folder holds its vision tower)
FOLDER_TYPES = {"dinov2": "dinov2", "dinov2_with_registers": "dinov2_with_registers", "clip": "clip_vision_model",
                "clip_vision_model": "clip_vision_model", "siglip": "siglip_vision_model",
                "siglip_vision_model": "siglip_vision_model"}


def tower(vision: nn.Module) -> Tower:
    model_type = vision.config.model_type
    if model_type not in TOWERS:
        raise ValueError(f"a {model_type!r} vision model is not a supported teacher tower ({', '.join(TOWERS)})")
    return TOWERS[model_type]


def registers(vision: nn.Module) -> int:
    """Register tokens between the CLS and the patches (DINOv2 with registers), 0 elsewhere."""
    return getattr(vision.config, "num_register_tokens", 0)


def prefix_tokens(vision: nn.Module) -> int:
    """Tokens before the patches in the tower's `last_hidden_state`."""
    return int(tower(vision).has_cls) + registers(vision)


def layer_norm_eps(vision: nn.Module) -> float:
    """The eps of the tower's block norms (Qwen's blocks fix theirs at 1e-6; the others' configs say it)."""
    return getattr(vision.config, "layer_norm_eps", 1e-6)


def rope_theta(vision: nn.Module) -> float | None:
    """The base of the tower's 2-D rotary positions (Qwen's), None for a tower with a position table."""
    return vision.config.rope_parameters["rope_theta"] if tower(vision).rope else None


def pos_grid(vision: nn.Module) -> int:
    """The side of the tower's learned position grid resized to every input (Qwen3's), 0 for none."""
    return math.isqrt(vision.config.num_position_embeddings) if tower(vision).pos_table else 0


def deepstack_levels(vision: nn.Module) -> int:
    """The DeepStack levels the tower gives beside its output (Qwen3-VL's), 0 for none."""
    return len(getattr(vision.config, "deepstack_visual_indexes", None) or ())


def final_norm(vision: nn.Module) -> nn.LayerNorm | None:
    """The LayerNorm the tower's `last_hidden_state` ends with, if any (InternViT's is an Identity unless
    `use_mean_pooling` is off)."""
    path = tower(vision).final_norm
    norm = vision.get_submodule(path) if path else None
    return norm if isinstance(norm, nn.LayerNorm) else None


@torch.no_grad()
def position_table(vision: nn.Module, size: int) -> torch.Tensor:
    """`(1, [1 +] (size/p)^2, C)`: the position embeddings the tower adds at `size` px, through its own resizing
    (the CLS entry first where it has one)."""
    embeddings = vision.get_submodule(tower(vision).embeddings)
    config = vision.config
    patch = config.patch_size[0] if isinstance(config.patch_size, (list, tuple)) else config.patch_size
    cls = int(tower(vision).has_cls)
    dummy = torch.zeros(1, cls + (size // patch) ** 2, config.hidden_size)
    table = embeddings.interpolate_pos_encoding(dummy, size, size)
    return table if table.ndim == 3 else table.unsqueeze(0)
