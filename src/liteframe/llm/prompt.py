"""The video prompt: the checkpoint's chat template with the video's image slots laid out as its processor lays
them out, one slot per grid step (a frame, or a clip of merged frames), each slot with its own token count.

The template is rendered and tokenised with one context token per slot, which is then repeated: the tokeniser
never sees the thousands of context tokens of a long video. Model-family specifics (placeholder tokens, slot text)
come from the family object (`liteframe.llm.family`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from liteframe.errors import InputError


@dataclass(frozen=True)
class Slot:
    """One image slot: sampled frames `first..last` (1-based), their times `start..end` (s), `tokens` LLM tokens."""

    first: int
    last: int
    start: float
    end: float
    tokens: int

    def label(self, timestamps: bool = False) -> str:
        """`Frame3`, `Frame5-8`; with timestamps `Frame3 (12.4s)`, `Frame5-8 (2.0s-3.2s)`."""
        frames = f"Frame{self.first}" if self.first == self.last else f"Frame{self.first}-{self.last}"
        if not timestamps:
            return frames
        times = f"{self.start:.1f}s" if self.first == self.last else f"{self.start:.1f}s-{self.end:.1f}s"
        return f"{frames} ({times})"


def make_slots(timestamps: Sequence[float], counts: Sequence[int], frames_per_step: int, first: int = 1) -> list[Slot]:
    """One slot per grid step of `frames_per_step` sampled frames holding `counts[i]` tokens, the frames numbered
    from `first` (a later chunk of a video continues the count); steps that kept no token (a set reducer may leave a
    frame empty) get no slot."""
    if len(timestamps) != len(counts) * frames_per_step:
        raise ValueError(f"{len(timestamps)} frames do not make {len(counts)} steps of {frames_per_step} frames")
    return [Slot(first + i * frames_per_step, first + (i + 1) * frames_per_step - 1, timestamps[i * frames_per_step],
                 timestamps[(i + 1) * frames_per_step - 1], n) for i, n in enumerate(counts) if n]


def build_input_ids(tokenizer, family, slots: Sequence[Slot], question: str, timestamps: bool = False,
                    slot_text: Sequence[str | None] | None = None) -> tuple[torch.Tensor, int]:
    """Chat-formatted prompt ids `(1, L)` with `slot.tokens` context tokens per slot, and the length of the prefix
    that ends with the video (what questions about the same video share). `slot_text[i]`, if given, is a line put
    before slot i (e.g. the subtitles under its frames); `timestamps` asks for the slots' times in their labels
    where the family's layout has labels (InternVL's)."""
    if question is None:
        raise InputError("a question is needed (got None)")
    if slot_text is not None and len(slot_text) != len(slots):
        raise InputError(f"slot_text has {len(slot_text)} entries for {len(slots)} slots")
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    placeholder = family.video_placeholder(tokenizer)
    if text.count(placeholder) != 1:
        raise InputError(f"the question and the chat template must not contain {placeholder}: it marks the video")
    text = text.replace(placeholder, family.video_text(tokenizer, slots, slot_text, timestamps))
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    is_context = ids == family.context_id(tokenizer)
    if int(is_context.sum()) != len(slots):
        raise InputError(f"the question and slot texts must not contain {family.context_token(tokenizer)}: it is "
                         "the image placeholder")
    counts = torch.tensor([slot.tokens for slot in slots], dtype=torch.long)
    repeats = torch.ones_like(ids).masked_scatter_(is_context, counts)
    ids = ids.repeat_interleave(repeats)[None]
    video_end = int((ids[0] == family.end_id(tokenizer)).nonzero().max()) + 1 if slots else 0
    return ids, video_end
