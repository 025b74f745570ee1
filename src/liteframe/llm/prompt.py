"""The video prompt, laid out as InternVL lays out video: one image slot per frame (or per clip of merged frames),
each introduced by its time, then the question, through the tokenizer's chat template."""
from __future__ import annotations

from typing import Sequence

import torch

from liteframe.errors import InputError


def slot_labels(timestamps: Sequence[float], frames_per_slot: int) -> list[str]:
    """One label per image slot: `Frame 3 (12.4s)`, or `Frames 5-8 (2.0s-3.2s)` for a clip of merged frames."""
    if len(timestamps) % frames_per_slot:
        raise InputError(f"{len(timestamps)} frames do not split into slots of {frames_per_slot} frames")
    if frames_per_slot == 1:
        return [f"Frame {i + 1} ({t:.1f}s)" for i, t in enumerate(timestamps)]
    return [
        f"Frames {i + 1}-{i + frames_per_slot} ({timestamps[i]:.1f}s-{timestamps[i + frames_per_slot - 1]:.1f}s)"
        for i in range(0, len(timestamps), frames_per_slot)
    ]


def image_tokens(tokenizer) -> tuple[str, str, str]:
    """InternVL's `(<img>, </img>, <IMG_CONTEXT>)` as the checkpoint's tokenizer names them."""
    names = ("start_image_token", "end_image_token", "context_image_token")
    missing = [n for n in names if getattr(tokenizer, n, None) is None]
    if missing:
        raise InputError(f"tokenizer of {tokenizer.name_or_path or 'the model'} has no {', '.join(missing)}: "
                         "not an InternVL3 -hf checkpoint")
    return tuple(getattr(tokenizer, n) for n in names)


def build_input_ids(tokenizer, labels: Sequence[str], tokens_per_slot: int, question: str) -> torch.Tensor:
    """Chat-formatted prompt ids `(1, L)` with exactly `len(labels) * tokens_per_slot` image-context tokens.

    The template is rendered and tokenised with one context token per slot, which is then repeated: the
    tokeniser never sees the thousands of context tokens of a long video."""
    start, end, context = image_tokens(tokenizer)
    video = "\n".join(f"{label}: {start}{context}{end}" for label in labels)
    messages = [{"role": "user", "content": f"{video}\n{question}"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    context_id = tokenizer.convert_tokens_to_ids(context)
    is_context = ids == context_id
    if int(is_context.sum()) != len(labels):
        raise InputError(f"the question must not contain {context}: it is the image placeholder")
    repeats = torch.where(is_context, tokens_per_slot, 1)
    return ids.repeat_interleave(repeats)[None]
