"""The video prompt of Qwen3-VL and Qwen3.5, as `Qwen3VLProcessor` writes it.

The chat template renders a video as `<|vision_start|><|video_pad|><|vision_end|>`; the processor drops that outer
wrapper and writes one run per frame pair instead, `<{t:.1f} seconds><|vision_start|>` + one `<|video_pad|>` per
merged token + `<|vision_end|>`, `t` the mean time of the pair's two frames. liteframe writes one run per slot
(`liteframe.llm.prompt.Slot`: a grid step after the grid stage, so a pair for dense and set reducers, a clip of
`2 * block_t` frames for grid reducers), holding the slot's token count, with the slot's time printed the same
way: the mean of the times of the span's first and last frame, which for a pair is the processor's pair mean. A
slot whose step kept no token (a set reducer may empty a step) has no run. A slot's own text (e.g. subtitles) goes on
a line before its run.
"""
from __future__ import annotations

from typing import Sequence

import torch

from liteframe.errors import InputError
from liteframe.llm.prompt import Slot, build_input_ids

VIDEO_PAD = "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"


def slot_time(slot: Slot) -> float:
    """The time (s) printed before a slot's run: the mean of its first and last frame's times."""
    return (slot.start + slot.end) / 2


def video_text(slots: Sequence[Slot], slot_text: Sequence[str | None] | None = None) -> str:
    """The runs replacing the template's video wrapper, one `<|video_pad|>` per slot (repeated to the slot's count
    by `build_input_ids`), each after its slot's text line if any."""
    texts = slot_text or [None] * len(slots)
    return "".join(f"{text}\n" * bool(text) + f"<{slot_time(slot):.1f} seconds>{VISION_START}{VIDEO_PAD}{VISION_END}"
                   for slot, text in zip(slots, texts))


class Qwen3Layout:
    """The prompt side of the Qwen3-VL and Qwen3.5 families for `liteframe.llm.prompt.build_input_ids`.
    `build_input_ids` hands `video_text` the slots' labels only, while the runs need the slots' times, so an instance
    is bound to the slots it lays out (`input_ids` makes one per prompt); at integration `video_text` should take the
    slots and this binding goes."""

    def __init__(self, slots: Sequence[Slot] = ()):
        self.slots = list(slots)

    def check_tokenizer(self, tokenizer, model) -> None:
        """One line unless the tokenizer has Qwen's vision tokens and its `<|video_pad|>` is the model's."""
        vocab = tokenizer.get_vocab()
        missing = [t for t in (VISION_START, VIDEO_PAD, VISION_END) if t not in vocab]
        if missing:
            raise InputError(f"tokenizer of {tokenizer.name_or_path or 'the model'} has no {', '.join(missing)}: "
                             "not a Qwen3-VL or Qwen3.5 checkpoint")
        if self.context_id(tokenizer) != model.config.video_token_id:
            raise InputError(f"tokenizer's {VIDEO_PAD} id {self.context_id(tokenizer)} is not the model's "
                             f"video_token_id {model.config.video_token_id}: tokenizer and weights come from "
                             "different checkpoints")

    def video_placeholder(self, tokenizer) -> str:
        return VISION_START + VIDEO_PAD + VISION_END

    def context_token(self, tokenizer) -> str:
        return VIDEO_PAD

    def context_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids(VIDEO_PAD)

    def end_id(self, tokenizer) -> int:
        return tokenizer.convert_tokens_to_ids(VISION_END)

    def video_text(self, tokenizer, labels: Sequence[str], slot_text: Sequence[str | None] | None = None) -> str:
        if len(labels) != len(self.slots):
            raise ValueError(f"{len(labels)} slot labels for the {len(self.slots)} slots this layout is bound to")
        return video_text(self.slots, slot_text)


def input_ids(tokenizer, slots: Sequence[Slot], question: str,
              slot_text: Sequence[str | None] | None = None) -> tuple[torch.Tensor, int]:
    """Chat-formatted prompt ids `(1, L)` with `slot.tokens` `<|video_pad|>` per slot's run, and the length of the
    prefix that ends with the video (the last `<|vision_end|>`): `build_input_ids` with the Qwen3 layout."""
    return build_input_ids(tokenizer, Qwen3Layout(slots), slots, question, slot_text=slot_text)
