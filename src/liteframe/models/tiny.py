"""Tiny real `transformers` configs and a matching tiny student, for tests and CPU benchmarks (seconds, not minutes)."""
from __future__ import annotations

from transformers import (CLIPVisionConfig, Dinov2Config, Dinov2WithRegistersConfig, InternVLConfig,
                          InternVLVisionConfig, Qwen2Config, SiglipVisionConfig)

from .config import LiteFrameConfig, student_config

TINY_WIDTH = 64  # 4 heads of 16


def tiny_vision_config(kind: str = "internvl", image_size: int = 56, width: int = TINY_WIDTH, depth: int = 6,
                       heads: int = 4, mlp: int = 128, patch_size: int = 14):
    """A tiny InternViT (SPEC 2 shape: qkv bias, LayerScale, no final norm), DINOv2 (`dinov2`, or
    `dinov2_registers` with 4 registers), CLIP or SigLIP vision config."""
    common = dict(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads, image_size=image_size,
                  patch_size=patch_size)
    if kind in ("dinov2", "dinov2_registers"):  # DINOv2 gives its MLP as a ratio; LayerScale 0.1 tells its crop from a scale of one
        registers = {"num_register_tokens": 4} if kind == "dinov2_registers" else {}
        cls = Dinov2WithRegistersConfig if registers else Dinov2Config
        return cls(mlp_ratio=mlp // width, layerscale_value=0.1, **common, **registers)
    common["intermediate_size"] = mlp
    if kind == "internvl":
        return InternVLVisionConfig(attention_bias=True, **common)
    if kind == "clip":
        return CLIPVisionConfig(**common)
    if kind == "siglip":
        return SiglipVisionConfig(**common)
    raise ValueError(f"unknown tiny teacher kind {kind!r}; choose from internvl, dinov2, dinov2_registers, clip, "
                     f"siglip")


def tiny_internvl_config(image_size: int = 56, llm_width: int = 32, vocab_size: int = 128,
                         **vision) -> InternVLConfig:
    """A tiny full InternVL3 config (tiny InternViT + projector + a 1-layer Qwen2), e.g. for `Teacher.from_config`."""
    text = Qwen2Config(hidden_size=llm_width, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                       intermediate_size=2 * llm_width, vocab_size=vocab_size)
    return InternVLConfig(vision_config=tiny_vision_config("internvl", image_size, **vision), text_config=text,
                          image_token_id=vocab_size - 1)


def tiny_student_config(temporal: str = "dwconv", image_size: int = 56, teacher_width: int = TINY_WIDTH,
                        **overrides) -> LiteFrameConfig:
    """`liteframe-tiny` (3 blocks of width 32, croppable from `tiny_vision_config("internvl")`) for another
    variant, image size or teacher width; `overrides` are any other `LiteFrameConfig` fields."""
    return student_config("liteframe-tiny", temporal=temporal, image=image_size, out_dim=teacher_width, **overrides)
