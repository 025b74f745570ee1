"""Which modules LMA's LoRA adapters wrap in the Qwen3-VL and Qwen3.5 language models (PEFT `target_modules`, a
regular expression PEFT matches against the whole module name).

Always the language model's layers only (`model.language_model.layers.N...`): never the vision tower
(`model.visual`, whose attention also has projections) nor the DeepStack mergers. Per family:
- `qwen3_vl`: attention `q/k/v/o_proj` and MLP `gate/up/down_proj` of every layer (InternVL's LMA set).
- `qwen3_5`: the same in its full-attention layers and MLPs, and every projection of its gated delta-net layers,
  the linear-attention counterpart of q/k/v/o: `in_proj_qkv`, the output gate's `in_proj_z`, the per-head decay and
  write-strength `in_proj_a`/`in_proj_b`, and `out_proj` (not the short convolution, not a projection).
- MoE (`qwen3_vl_moe`, `qwen3_5_moe`): attention only (and the linear-attention projections above), plus Qwen3.5-MoE's
  shared expert MLP; not the routed experts nor the router. The experts are fused `(experts, out, in)` parameters,
  not `nn.Linear`s: PEFT reaches them only through `target_parameters`, which cannot apply LoRA dropout (SPEC 6 has
  0.05) and would train one adapter per expert (128 to 512 of them, each seeing a few tokens); adapting the router
  would change which experts run.
"""
from __future__ import annotations

from liteframe.errors import InputError

_LAYER = r".*language_model\.layers\.\d+\."
_ATTENTION = r"self_attn\.(q|k|v|o)_proj"
_LINEAR_ATTENTION = r"linear_attn\.(in_proj_(qkv|z|a|b)|out_proj)"
_MLP = r"mlp\.(gate|up|down)_proj"
_SHARED_EXPERT = r"mlp\.shared_expert\.(gate|up|down)_proj"

TARGETS = {
    "qwen3_vl": f"{_LAYER}({_ATTENTION}|{_MLP})",
    "qwen3_vl_moe": f"{_LAYER}{_ATTENTION}",
    "qwen3_5": f"{_LAYER}({_ATTENTION}|{_LINEAR_ATTENTION}|{_MLP})",
    "qwen3_5_moe": f"{_LAYER}({_ATTENTION}|{_LINEAR_ATTENTION}|{_SHARED_EXPERT})",
}


def lora_targets(model_type: str) -> str:
    """The `target_modules` regular expression of a checkpoint's `model_type` (see the module docstring)."""
    if model_type not in TARGETS:
        raise InputError(f"model_type {model_type!r}: no LoRA targets for it (choose {', '.join(TARGETS)})")
    return TARGETS[model_type]
