"""InternVL3 (`-hf`, native `transformers` format, `model_type` `internvl`) as a model family.

Frames are resized to the tower's square input (448 px) with ImageNet's mean and std, one frame per grid step. The
pipeline's backbone is InternViT (`Teacher`), followed by InternVL's 2 x 2 pixel shuffle and its projector; a
LiteFrame student can take InternViT's place in front of the same projector. Its processor turns the template's
`<video>` into `Frame{i}: <img>` + image-context tokens + `</img>`, one line per frame
(`InternVLProcessor.replace_video_token`); liteframe gives each slot (frame or clip) such a line with the slot's own
token count. Positions are the LLM's plain 1-D ones.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from transformers import InternVLForConditionalGeneration

from liteframe.compression import Compression
from liteframe.errors import InputError
from liteframe.llm.data import DataConfig, Square
from liteframe.llm.encoders import Vision, VisualTokens, load_student
from liteframe.llm.family import FAMILIES, embed
from liteframe.llm.inputs import LLMInputs
from liteframe.llm.prompt import Slot
from liteframe.models import Teacher


class InternVL:
    title = "an InternVL3 -hf"
    checkpoint_class = InternVLForConditionalGeneration
    context_config = "image_token_id"
    # PEFT fullmatches a string against each module name: a bare name list would also wrap the vision tower's
    # q_proj/k_proj/v_proj
    lora_targets = r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
    projector_modules = ["multi_modal_projector"]
    reasoning_tokens = 0
    _tokens = ("start_image_token", "end_image_token", "context_image_token", "video_token")

    def vision(self, model, folder: Path | None = None, pixels: str = "processor") -> Vision:
        """InternViT and the projector, frames resized to its square (the processor's size); refused once a student
        replaced the tower."""
        if pixels != "processor":
            raise InputError(f"pixels {pixels!r}: InternVL3 resizes every frame to its tower's square; only "
                             "'processor' applies")
        teacher = self._teacher(model)
        patch = teacher.patch_size
        return Vision(teacher, teacher.projector, DataConfig(Square(teacher.image_size)), (1, patch, patch))

    def student(self, model, student: Path, folder: Path | None = None) -> Vision:
        """A LiteFrame student folder in front of the checkpoint's projector: its grid step is a clip of its block.
        Its frames are InternVL's (`folder`, the checkpoint's, sets nothing more)."""
        teacher = self._teacher(model)
        student = load_student(student, teacher)
        t, h, w = student.config.block
        patch = teacher.patch_size
        return Vision(student, teacher.projector, DataConfig(Square(student.config.image)),
                      (t, patch * h, patch * w), compression=Compression(student.config.block),
                      clip=math.lcm(t, student.config.compression.clip))

    def drop_vision(self, model) -> None:
        model.model.vision_tower = None

    def missing_tokens(self, tokenizer) -> list[str]:
        return [n for n in self._tokens if getattr(tokenizer, n, None) is None]

    def video_placeholder(self, tokenizer) -> str:
        return tokenizer.video_token

    def video_text(self, tokenizer, slots: Sequence[Slot], slot_text: Sequence[str | None] | None = None,
                   timestamps: bool = False) -> str:
        """One line per slot, `{label}: <img><IMG_CONTEXT></img>` (one context token, repeated later; the label
        with the slot's times if asked), after the slot's text line if any."""
        start, end, context = tokenizer.start_image_token, tokenizer.end_image_token, tokenizer.context_image_token
        texts = slot_text or [None] * len(slots)
        return "\n".join(f"{text}\n" * bool(text) + f"{slot.label(timestamps)}: {start}{context}{end}"
                         for slot, text in zip(slots, texts))

    def context_token(self, tokenizer) -> str:
        return tokenizer.context_image_token

    def context_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids(tokenizer.context_image_token)

    def end_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids(tokenizer.end_image_token)

    def llm_inputs(self, model, ids: torch.Tensor, visual: VisualTokens, fps: float) -> LLMInputs:
        """Prompt ids `(1, L)` -> embeddings with the visual tokens at the context positions; InternVL's positions
        are plain 1-D ones, so the frame rate is not needed."""
        return LLMInputs(ids, embed(model, ids, self, visual), torch.ones_like(ids))

    def context_length(self, model) -> int:
        return model.config.text_config.max_position_embeddings

    @staticmethod
    def _teacher(model) -> Teacher:
        inner = model.model
        if inner.vision_tower is None:
            raise InputError("this VideoLLM dropped its vision tower for a student: load it again with "
                             "from_pretrained")
        return Teacher(inner.vision_tower, inner.multi_modal_projector)


FAMILIES.register("internvl")(InternVL())
