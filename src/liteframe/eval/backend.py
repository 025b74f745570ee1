"""The VideoLLM the evaluation drives: `encode` a video once, `answer` each of its questions from the same tokens
(with `slot_text` before each image slot, and the LLM's cache of the video prefix reused across questions)."""
from __future__ import annotations

from pathlib import Path

from transformers.utils import logging as hf_logging

from liteframe.llm import VideoLLM


def load_llm(model: str | Path, encoder: str, compression=None, adapter: str | Path | None = None,
             device: str | None = None, frames: int | None = None, pixels: str = "processor") -> VideoLLM:
    """`VideoLLM.from_pretrained` with the run's encoder, compression and LoRA adapter. `frames`, the run's frame
    count, is refused before the weights load when the encoder cannot take it, or, where every frame is resized to
    one size (InternVL), when it gives more tokens than the LLM's context; where the token count depends on each
    video's size (Qwen2.5-VL), that is checked per video (`VideoLLM.check`). `pixels`: how frames are sized (the
    checkpoint's processor, or Qwen2.5-VL's `qwen-vl-utils` budget)."""
    hf_logging.disable_progress_bar()  # the run's own progress bar is the one to read
    if frames is not None:
        VideoLLM.skeleton(model, encoder, compression, pixels=pixels).check(frames)
    return VideoLLM.from_pretrained(model, encoder=encoder, compression=compression, device=device, adapter=adapter,
                                    pixels=pixels)
