"""Crop init (SPEC 4): a LiteFrame student's weights taken from an InternViT teacher.

Every second teacher block (ending on the last, unless `teacher_layers` says otherwise) and the first `width`
channels of every weight, so the first `heads` heads of 64. The final Linear(width, out_dim) starts as the
identity onto the first `width` output channels (zero elsewhere) *(ours)*: the untrained student's output is
the cropped teacher's features in the teacher's first channels, and the rest starts at zero.
Temporal mixers and downsampling keep their own init (zero branch, average pooling).
"""
from __future__ import annotations

import torch

from ..errors import InputError
from .config import LiteFrameConfig


def teacher_layers(config: LiteFrameConfig, teacher_depth: int) -> tuple[int, ...]:
    """The teacher blocks (0-based) cropped into the student's `config.depth` blocks."""
    if config.teacher_layers is not None:
        layers = config.teacher_layers
    else:
        layers = tuple(range(teacher_depth - 1 - 2 * (config.depth - 1), teacher_depth, 2))
    if len(layers) != config.depth or min(layers) < 0 or max(layers) >= teacher_depth:
        raise ValueError(f"cannot crop {config.depth} student blocks from teacher blocks {layers} of a "
                         f"{teacher_depth}-block teacher")
    return layers


def mismatches(config: LiteFrameConfig, tcfg) -> list[str]:
    """Why the student cannot be cropped from an `InternVLVisionConfig`, one phrase per differing field. The
    teacher's final LayerNorm (`use_mean_pooling: false`) does not matter: the crop never reads it, and CTD's
    targets are the teacher's real output, final norm included."""
    same = {
        "head dim": (config.width // config.heads, tcfg.hidden_size // tcfg.num_attention_heads),
        "patch size": (config.patch, tuple(tcfg.patch_size)[0]),
        "image size": (config.image, tuple(tcfg.image_size)[0]),
        "qkv bias": (config.qkv_bias, tcfg.attention_bias),
        "norm type": ("layer_norm", tcfg.norm_type),
        "qk norm": (False, tcfg.use_qk_norm),
    }
    at_most = {"width": (config.width, tcfg.hidden_size), "mlp": (config.mlp, tcfg.intermediate_size)}
    problems = [f"{k}: student {s!r}, teacher {t!r}" for k, (s, t) in same.items() if s != t]
    problems += [f"{k} {s} exceeds the teacher's {t}" for k, (s, t) in at_most.items() if s > t]
    if config.out_dim < config.width:
        problems.append(f"out_dim {config.out_dim} is below the width {config.width}")
    return problems


def crop_state_dict(vision, config: LiteFrameConfig) -> dict[str, torch.Tensor]:
    """An `InternVLVisionModel`'s weights -> the LiteFrame state dict (all but mixers and downsampling)."""
    tcfg = vision.config
    if tcfg.model_type != "internvl_vision":
        raise InputError(f"crop init needs an InternViT teacher, got a {tcfg.model_type!r} model")
    problems = mismatches(config, tcfg)
    if problems:
        raise InputError(f"crop init: the student does not fit the teacher: {'; '.join(problems)}")
    c, m = config.width, config.mlp
    t = vision.state_dict()
    s = {
        "patch_embed.weight": t["embeddings.patch_embeddings.projection.weight"][:c],
        "patch_embed.bias": t["embeddings.patch_embeddings.projection.bias"][:c],
        "cls_token": t["embeddings.cls_token"][..., :c],
        "pos_embed": t["embeddings.position_embeddings"][..., :c],
        "head.weight": torch.eye(config.out_dim, c, dtype=t["embeddings.cls_token"].dtype),
        "head.bias": torch.zeros(config.out_dim, dtype=t["embeddings.cls_token"].dtype),
    }
    for i, j in enumerate(teacher_layers(config, tcfg.num_hidden_layers)):
        src, dst = f"encoder.layer.{j}.", f"blocks.{i}."
        attn = src + "attention."
        s[dst + "attn.qkv.weight"] = torch.cat([t[f"{attn}{x}_proj.weight"][:c, :c] for x in "qkv"])
        if config.qkv_bias:
            s[dst + "attn.qkv.bias"] = torch.cat([t[f"{attn}{x}_proj.bias"][:c] for x in "qkv"])
        s[dst + "attn.proj.weight"] = t[attn + "projection_layer.weight"][:c, :c]
        s[dst + "attn.proj.bias"] = t[attn + "projection_layer.bias"][:c]
        for ours, theirs in (("norm1", "layernorm_before"), ("norm2", "layernorm_after")):
            s[f"{dst}{ours}.weight"] = t[f"{src}{theirs}.weight"][:c]
            s[f"{dst}{ours}.bias"] = t[f"{src}{theirs}.bias"][:c]
        s[dst + "ls1"] = t[src + "lambda_1"][:c]
        s[dst + "ls2"] = t[src + "lambda_2"][:c]
        s[dst + "mlp.fc1.weight"] = t[src + "mlp.fc1.weight"][:m, :c]
        s[dst + "mlp.fc1.bias"] = t[src + "mlp.fc1.bias"][:m]
        s[dst + "mlp.fc2.weight"] = t[src + "mlp.fc2.weight"][:c, :m]
        s[dst + "mlp.fc2.bias"] = t[src + "mlp.fc2.bias"][:c]
    return {k: v.clone() for k, v in s.items()}
