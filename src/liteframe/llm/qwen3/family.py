"""Qwen3-VL (dense `qwen3_vl`, MoE `qwen3_vl_moe`) and Qwen3.5 (dense `qwen3_5`, MoE `qwen3_5_moe`), native
`transformers` format, as model families: one class, four registrations.

- Vision: the tower reads frame pairs sized by the processor's whole-video pixel budget (`frames.data_config`, from
  the checkpoint's video processor config); its merger's grid is the pipeline's backbone output, with
  Qwen3-VL's DeepStack features as levels that every reducer reduces with the tokens' own decision
  (`vision.Qwen3Vision`). Qwen3.5's tower is the same without DeepStack. A LiteFrame student takes the tower's place
  in front of its mergers, its last blocks feeding Qwen3-VL's DeepStack ones (`student`, as for Qwen2.5-VL).
- Prompt (`Qwen3VLProcessor`'s layout): the template's `<|vision_start|><|video_pad|><|vision_end|>` is replaced by
  one run per slot, `<{t:.1f} seconds><|vision_start|>` + the slot's pads + `<|vision_end|>`, `t` the mean time of
  the slot's first and last frame (`slot_time`): for a frame pair (dense, set reducers) the processor's pair mean;
  for a grid reducer's clip the mean of its span. A slot that kept no token has no run; a slot's text (subtitles) is
  a line before its run.
- LLM inputs: the embeddings with the tokens at the pads, mRoPE positions per run (`positions.rope_positions`), and
  Qwen3-VL's DeepStack levels with their visual mask (`LLMInputs.deepstack`), which the language model adds after
  its first layers; `VideoLLM` prefills through the language model itself, so they reach it.
- Qwen3.5's LLM is hybrid (gated delta-net layers, full attention every fourth): its cache holds recurrent states,
  which `VideoLLM.answer`'s prefix reuse copies. Its template opens the answer with `<think>`: `reasoning_tokens` is
  the generation budget `liteframe eval` adds for the reasoning before the answer (lmms-eval's Qwen3.5 default
  generation limit).
- LoRA targets: the language model's layers only. Dense: attention and MLP projections (Qwen3.5 also every
  projection of its gated delta-net layers: `in_proj_qkv`, `in_proj_z`, `in_proj_a`, `in_proj_b`, `out_proj`). MoE:
  attention (and the delta-net projections) and Qwen3.5-MoE's shared expert, not the routed experts (fused
  `(experts, out, in)` parameters, which PEFT reaches only through `target_parameters`, with no LoRA dropout and an
  adapter per expert) nor the router (adapting it would change which experts run).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from transformers import (Qwen3_5ForConditionalGeneration, Qwen3_5MoeForConditionalGeneration,
                          Qwen3VLForConditionalGeneration, Qwen3VLMoeForConditionalGeneration)

from liteframe.llm.encoders import Vision, VisualTokens
from liteframe.llm.family import FAMILIES, embed
from liteframe.llm.inputs import LLMInputs
from liteframe.llm.prompt import Slot
from liteframe.llm.qwen.tokens import VIDEO_PAD, VISION_END, VISION_START, QwenTokens
from liteframe.llm.qwen.vision import student_vision, vit_of
from liteframe.llm.qwen3.frames import data_config
from liteframe.llm.qwen3.positions import rope_positions
from liteframe.llm.qwen3.vision import FACTOR, FRAMES_PER_STEP, Qwen3Vision
from liteframe.models.qwen import keep_merger

_LAYER = r".*language_model\.layers\.\d+\."
_ATTENTION = r"self_attn\.(q|k|v|o)_proj"
_LINEAR_ATTENTION = r"linear_attn\.(in_proj_(qkv|z|a|b)|out_proj)"
_MLP = r"mlp\.(gate|up|down)_proj"
_SHARED_EXPERT = r"mlp\.shared_expert\.(gate|up|down)_proj"


def slot_time(slot: Slot) -> float:
    """The time (s) printed before a slot's run: the mean of its first and last frame's times."""
    return (slot.start + slot.end) / 2


class Qwen3(QwenTokens):
    """One of the four Qwen3 families (see the module docstring)."""

    def __init__(self, title: str, checkpoint_class: type, lora_targets: str, deepstack: bool,
                 reasoning_tokens: int = 0):
        self.title, self.checkpoint_class, self.lora_targets = title, checkpoint_class, lora_targets
        # the mergers that carry visual tokens and DeepStack features into the LLM's width (PEFT saves modules by
        # name, not a ModuleList: the released Qwen3-VL checkpoints have 3 DeepStack mergers)
        self.projector_modules = ["merger"] + [f"deepstack_merger_list.{i}" for i in range(3 if deepstack else 0)]
        self.reasoning_tokens = reasoning_tokens

    def vision(self, model, folder: Path | None = None, pixels: str = "processor") -> Vision:
        """The tower and its mergers (`Qwen3Vision`), frames sized by the whole-video budget of the checkpoint's
        processor config in `folder` (`frames.data_config`)."""
        return Vision(Qwen3Vision(vit_of(model)), nn.Identity(), data_config(folder, pixels),
                      (FRAMES_PER_STEP, FACTOR, FACTOR), shuffle=False)

    def student(self, model, student: Path, folder: Path | None = None) -> Vision:
        """A LiteFrame student folder of this family's tower in the ViT's place, in front of the checkpoint's own
        merger (and Qwen3-VL's DeepStack mergers, fed by the student's levels: `ThroughMerger`), as for Qwen2.5-VL:
        a grid step is a clip of its block of frame pairs, its merged grid (and levels) reach the LLM as a grid
        reducer's do at the same compression, and its frames are a square of its own size, resized and normalised
        as the checkpoint's processor (`folder`) does."""
        return student_vision(vit_of(model), student, data_config(folder), FACTOR)

    def drop_vision(self, model) -> None:
        """Free the ViT; the mergers stay, for a student's tokens and levels (and LMA's `train_projector`)."""
        keep_merger(model.model.visual)

    def video_text(self, tokenizer, slots: Sequence[Slot], slot_text: Sequence[str | None] | None = None,
                   timestamps: bool = False) -> str:
        """One timestamped run per slot, a pad each (repeated later), after the slot's text line if any."""
        texts = slot_text or [None] * len(slots)
        return "".join(f"{text}\n" * bool(text) + f"<{slot_time(slot):.1f} seconds>{VISION_START}{VIDEO_PAD}"
                       f"{VISION_END}" for slot, text in zip(slots, texts))

    def llm_inputs(self, model, ids: torch.Tensor, visual: VisualTokens, fps: float) -> LLMInputs:
        """Prompt ids `(1, L)` -> embeddings with the tokens at the pads, mRoPE `position_ids (3, 1, L)` (each token
        at its place in its run's grid; time is in the text, so `fps` is not needed) and the DeepStack levels with
        their mask."""
        embeds = embed(model, ids, self, visual)
        is_video = ids == model.config.video_token_id
        width = visual.grid[2]
        positions = rope_positions(is_video[0], visual.pos // width, visual.pos % width)
        deepstack = tuple(level[0].to(embeds.dtype) for level in visual.levels)
        return LLMInputs(ids, embeds, torch.ones_like(ids), positions, is_video, deepstack)

    def context_length(self, model) -> int:
        return model.config.text_config.max_position_embeddings


for model_type, family in {
    "qwen3_vl": Qwen3("a Qwen3-VL", Qwen3VLForConditionalGeneration, f"{_LAYER}({_ATTENTION}|{_MLP})", True),
    "qwen3_vl_moe": Qwen3("a Qwen3-VL-MoE", Qwen3VLMoeForConditionalGeneration, f"{_LAYER}{_ATTENTION}", True),
    "qwen3_5": Qwen3("a Qwen3.5", Qwen3_5ForConditionalGeneration,
                     f"{_LAYER}({_ATTENTION}|{_LINEAR_ATTENTION}|{_MLP})", False, reasoning_tokens=1024),
    "qwen3_5_moe": Qwen3("a Qwen3.5-MoE", Qwen3_5MoeForConditionalGeneration,
                         f"{_LAYER}({_ATTENTION}|{_LINEAR_ATTENTION}|{_SHARED_EXPERT})", False, reasoning_tokens=1024),
}.items():
    FAMILIES.register(model_type)(family)
