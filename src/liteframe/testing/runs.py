"""One question answered through a checkpoint with a given encoder, as the tests compare two encoders side by side."""
from __future__ import annotations

import torch

from liteframe.llm import VideoLLM, build_input_ids
from liteframe.llm.inputs import LLMInputs
from liteframe.llm.videollm import Answer


def answer_with_inputs(model: str, encoder: str, compression: int, video: str, frames: int, question: str,
                       max_new_tokens: int = 2) -> tuple[Answer, LLMInputs]:
    """The checkpoint folder `model` with `encoder` at `compression`, on CPU in float32 -> its answer to `question`
    on `frames` frames of `video`, and the LLM inputs (ids, positions, DeepStack levels) of that prompt."""
    llm = VideoLLM.from_pretrained(model, encoder, compression, device="cpu", dtype=torch.float32)
    enc = llm.encode(video, frames)
    ids, _ = build_input_ids(llm.tokenizer, llm.family, enc.slots, question)
    return llm.answer(enc, question, max_new_tokens=max_new_tokens), llm.inputs(ids, enc)
