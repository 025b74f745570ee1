"""Crop init (SPEC 4): a LiteFrame student's weights taken from a teacher tower (InternViT, Qwen2.5-VL's ViT, DINOv2
with or without registers, CLIP or SigLIP vision; `towers.py`), and the student a teacher gives by the paper's
ratios.

`teacher_layers` picks the teacher blocks (by default evenly spread and ending on the last: every second one for
half the depth); the first `width` residual channels of every weight; in each block the `heads` heads that
`teacher_heads` names ("first", or "strongest": the largest norm of their slice of the output projection, which
bounds what a head can write into the residual stream) and the first `mlp` hidden units. The position table is
the teacher's own at the student's input size (its resizing, done once); a tower with rotary positions (Qwen2.5-VL's)
has none, and Qwen3's learned grid, resized to every input, is kept whole, cropped in channels; a patch embedding over
frame pairs is cropped like any other. The final Linear(width, out_dim) starts
as the identity onto the first `width` output channels (zero elsewhere) *(ours)*: the untrained student's output
is the cropped teacher's features in the teacher's first channels, and the rest starts at zero. Temporal mixers
and downsampling keep their own init (zero branch, average pooling).
"""
from __future__ import annotations

from dataclasses import fields, replace
from types import SimpleNamespace

import torch
from torch import nn

from ..errors import InputError
from .config import LiteFrameConfig, scaled_side, student_config
from .towers import (deepstack_levels, final_norm, layer_norm_eps, pos_grid, position_table, registers, rope_theta,
                     tower)


def teacher_layers(config: LiteFrameConfig, teacher_depth: int) -> tuple[int, ...]:
    """The teacher blocks (0-based) cropped into the student's `config.depth` blocks: `config.teacher_layers`, or
    `depth` blocks evenly spread and ending on the last (every second one at half the depth)."""
    if config.teacher_layers is not None:
        return config.teacher_layers
    step = teacher_depth / config.depth
    return tuple(round(teacher_depth - 1 - step * (config.depth - 1 - i)) for i in range(config.depth))


def mismatches(config: LiteFrameConfig, vision: nn.Module) -> list[str]:
    """Every reason the student cannot be cropped from the tower `vision`, one phrase each. A tower's final
    LayerNorm that `config.final_norm` leaves out does not block the crop: CTD's targets are the teacher's real
    output, final norm included."""
    t = vision.config
    structure = teacher_structure(vision)
    names = {"patch": "patch size", "qkv_bias": "qkv bias", "act": "activation", "eps": "layer norm eps",
             "cls_token": "cls token", "registers": "registers", "embed_norm": "embed norm", "norm": "norm",
             "gated_mlp": "gated mlp", "rope_theta": "rope theta", "pos_grid": "position grid", "levels": "levels",
             "temporal_patch": "temporal patch"}
    same = {"head dim": (config.width // config.heads, t.hidden_size // t.num_attention_heads),
            **{name: (getattr(config, key), structure[key]) for key, name in names.items()}}
    if config.teacher:
        same["teacher"] = (config.teacher, structure["teacher"])
    if t.model_type == "internvl_vision":
        same["norm type"] = ("layer_norm", t.norm_type)
        same["qk norm"] = (False, t.use_qk_norm)
    if getattr(t, "use_swiglu_ffn", False):
        same["mlp"] = ("gelu mlp", "swiglu")
    at_most = {"width": (config.width, t.hidden_size), "mlp": (config.mlp, _mlp(t))}
    problems = [f"{k}: student {s!r}, teacher {v!r}" for k, (s, v) in same.items() if s != v]
    problems += [f"{k} {s} exceeds the teacher's {v}" for k, (s, v) in at_most.items() if s > v]
    if config.final_norm and final_norm(vision) is None:
        problems.append("final_norm: the teacher's output has no final LayerNorm to crop")
    if config.image % config.patch:
        problems.append(f"image {config.image} is not a multiple of the patch {config.patch}")
    elif tower(vision).merger and hasattr(config, "block") and (config.image // config.patch) % (
            2 * max(config.block[1:])):  # (`fitted` passes the values of an unbuildable config: no block)
        problems.append(f"image {config.image}: its {config.image // config.patch}-patch grid does not split into "
                        f"the student's {max(config.block[1:])}x spatial stride and the merger's 2 x 2")
    if config.out_dim < config.width:
        problems.append(f"out_dim {config.out_dim} is below the width {config.width}")
    if config.teacher_layers is not None:
        if len(config.teacher_layers) != config.depth or any(not 0 <= j < t.num_hidden_layers
                                                             for j in config.teacher_layers):
            problems.append(f"teacher_layers {list(config.teacher_layers)} must name depth={config.depth} blocks "
                            f"of 0..{t.num_hidden_layers - 1}")
    elif config.depth > t.num_hidden_layers:
        problems.append(f"depth {config.depth} exceeds the teacher's {t.num_hidden_layers} blocks: set "
                        f"teacher_layers to the teacher block each student block starts from")
    return problems


def student_for(vision: nn.Module, name: str | None = None, **overrides) -> LiteFrameConfig:
    """A student to crop from the tower `vision`, with its structure (`teacher_structure`) and, without `name`,
    the paper's ratios (LiteFrame-B from InternViT-300M): half its blocks, 3/4 of its heads (rounded, whole
    heads), its MLP ratio, downsampling after a third and two thirds of the depth; with `name`, that named
    config's sizes. `overrides`: any `LiteFrameConfig` field, over all of it. Every misfit is named in one
    `InputError`."""
    values = teacher_structure(vision)
    if name is None:
        t = vision.config
        depth = overrides.get("depth", max(1, t.num_hidden_layers // 2))
        heads = overrides.get("heads", max(1, round(0.75 * t.num_attention_heads)))
        width = overrides.get("width", heads * (t.hidden_size // t.num_attention_heads))
        values.update(width=width, depth=depth, heads=heads, mlp=width * _mlp(t) // t.hidden_size,
                      downsample_after=(max(1, round(depth / 3)), max(1, round(2 * depth / 3))))
    return fitted(vision, {**values, **overrides}, name)


def _mlp(t) -> int:
    """The tower's MLP hidden width (DINOv2 gives a ratio)."""
    return getattr(t, "intermediate_size", None) or int(t.hidden_size * t.mlp_ratio)


def teacher_structure(vision: nn.Module) -> dict:
    """The `LiteFrameConfig` fields a student copies from the tower `vision` whatever its size."""
    t, spec = vision.config, tower(vision)
    patch = t.patch_size[0] if isinstance(t.patch_size, (list, tuple)) else t.patch_size
    # a tower with no input size of its own (Qwen's) leaves the student's to its config
    image = {} if spec.square else {"image": t.image_size[0] if isinstance(t.image_size, (list, tuple)) else
                                    t.image_size}
    return dict(patch=patch, **image, out_dim=t.hidden_size, act=t.hidden_act, eps=layer_norm_eps(vision),
                qkv_bias=getattr(t, "attention_bias", getattr(t, "qkv_bias", True)), cls_token=spec.has_cls,
                registers=registers(vision), embed_norm=spec.embed_norm is not None,
                final_norm=final_norm(vision) is not None, norm=spec.norm, gated_mlp=spec.gated_mlp,
                rope_theta=rope_theta(vision), pos_grid=pos_grid(vision), levels=deepstack_levels(vision),
                temporal_patch=getattr(t, "temporal_patch_size", 1),
                teacher=t.model_type)


def fitted(vision: nn.Module, values: dict, name: str | None = None) -> LiteFrameConfig:
    """`LiteFrameConfig(**values)` (over the named config `name` when given), refused with every reason it cannot
    be built or cropped from `vision` in one `InputError`."""
    known = {f.name for f in fields(LiteFrameConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"student: unknown field(s) {', '.join(unknown)}")
    base = student_config(name) if name else LiteFrameConfig()
    try:
        config = replace(base, **values)
    except ValueError as err:  # the config's own problems, then the crop's, read from the values unchecked
        problems = [str(err)] + mismatches(SimpleNamespace(**{**base.__dict__, **values}), vision)
    else:
        problems = mismatches(config, vision)
    if problems:
        raise InputError(f"the student does not fit the {vision.config.model_type} teacher: {'; '.join(problems)}")
    return config


def _heads(attn_out: torch.Tensor, heads: int, head_dim: int, rule: str) -> torch.Tensor:
    """Indices of the teacher heads kept, in the teacher's order: `attn_out` is the output projection (C, C)."""
    if rule == "first":
        return torch.arange(heads)
    strength = attn_out.reshape(attn_out.shape[0], -1, head_dim).square().sum((0, 2))
    return strength.topk(heads).indices.sort().values


def crop_state_dict(vision: nn.Module, config: LiteFrameConfig) -> dict[str, torch.Tensor]:
    """A supported tower's weights -> the LiteFrame state dict (all but mixers and downsampling)."""
    spec = tower(vision)
    problems = mismatches(config, vision)
    if problems:
        raise InputError(f"crop init: the student does not fit the teacher: {'; '.join(problems)}")
    c, m, head_dim = config.width, config.mlp, config.width // config.heads
    t = vision.state_dict()
    emb = spec.embeddings + "."
    dtype = next(vision.parameters()).dtype
    patch = next(emb + n for n in ("patch_embeddings.projection", "patch_embedding", "proj")
                 if emb + n + ".weight" in t)
    s = {
        "patch_embed.weight": t[patch + ".weight"][:c],
        "patch_embed.bias": t[patch + ".bias"][:c] if patch + ".bias" in t else torch.zeros(c, dtype=dtype),
        "head.weight": torch.eye(config.out_dim, c, dtype=dtype),
        "head.bias": torch.zeros(config.out_dim, dtype=dtype),
    }
    if config.pos_grid:
        s["pos_embed"] = t[spec.pos_table][None, :, :c]
    elif config.rope_theta is None:
        s["pos_embed"] = position_table(vision, config.frame_size)[..., :c]
        if config.redundancy:  # `keyframe-tome`'s table for the key frames it reads at `scale`
            small = scaled_side(config.image, config.scale, config.patch)
            s["small_pos_embed"] = position_table(vision, small)[..., :c]
    if config.cls_token:
        s["cls_token"] = t.get(emb + "cls_token", t.get(emb + "class_embedding")).reshape(1, 1, -1)[..., :c]
    if config.registers:
        s["register_tokens"] = t[emb + "register_tokens"][..., :c]
    norms = {"embed_norm": config.embed_norm and spec.embed_norm, "final_norm": config.final_norm and spec.final_norm}
    bias = config.norm == "layernorm"  # RMSNorm has a weight only
    for ours, theirs in norms.items():
        if theirs:
            s[f"{ours}.weight"] = t[theirs + ".weight"][:c]
            if bias:
                s[f"{ours}.bias"] = t[theirs + ".bias"][:c]
    for i, j in enumerate(teacher_layers(config, vision.config.num_hidden_layers)):
        src, dst = spec.blocks.format(i=j), f"blocks.{i}."
        w = {ours: theirs and src + theirs for ours, theirs in spec.block.items()}
        keep = _heads(t[w["proj"] + ".weight"], config.heads, head_dim, config.teacher_heads)
        inner = (keep[:, None] * head_dim + torch.arange(head_dim)).flatten()  # the kept heads' channels
        qkv = _projections(t, w)
        s[dst + "attn.qkv.weight"] = torch.cat([weight[inner, :c] for weight, _ in qkv])
        if config.qkv_bias:
            s[dst + "attn.qkv.bias"] = torch.cat([b[inner] for _, b in qkv])
        s[dst + "attn.proj.weight"] = t[w["proj"] + ".weight"][:c, inner]
        s[dst + "attn.proj.bias"] = t[w["proj"] + ".bias"][:c]
        for norm in ("norm1", "norm2"):
            s[f"{dst}{norm}.weight"] = t[w[norm] + ".weight"][:c]
            if bias:
                s[f"{dst}{norm}.bias"] = t[w[norm] + ".bias"][:c]
        for ls in ("ls1", "ls2"):  # no LayerScale (CLIP, SigLIP, Qwen): a scale of one
            s[dst + ls] = t[w[ls]][:c] if w[ls] else torch.ones(c, dtype=dtype)
        hidden = ("gate", "up") if config.gated_mlp else ("fc1",)  # SwiGLU: gate and up fused, gate first
        s[dst + "mlp.fc1.weight"] = torch.cat([t[w[x] + ".weight"][:m, :c] for x in hidden])
        s[dst + "mlp.fc1.bias"] = torch.cat([t[w[x] + ".bias"][:m] for x in hidden])
        s[dst + "mlp.fc2.weight"] = t[w["fc2"] + ".weight"][:c, :m]
        s[dst + "mlp.fc2.bias"] = t[w["fc2"] + ".bias"][:c]
    return {k: v.detach().clone() for k, v in s.items()}


def _projections(t: dict[str, torch.Tensor], w: dict[str, str | None]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A block's query, key and value projections (weight, bias or None): separate, or thirds of a fused qkv
    (Qwen's)."""
    if w.get("qkv"):
        weight, bias = t[w["qkv"] + ".weight"], t.get(w["qkv"] + ".bias")
        return list(zip(weight.chunk(3), [None] * 3 if bias is None else bias.chunk(3)))
    return [(t[w[x] + ".weight"], t.get(w[x] + ".bias")) for x in "qkv"]
