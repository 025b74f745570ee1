"""The VideoLLM calls the evaluation makes: load, `encode` a video once, `answer` several questions about it.

`load_llm` returns the `VideoLLM` itself when it offers `encode`/`answer` (the encode-once API); until then a thin
`Bridge` gives the current `VideoLLM` that API from its own stages (sampling, chunked encoding, generation), with
`slot_text` put before each image slot's label. No KV cache is shared by the bridge.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from liteframe.errors import InputError
from liteframe.llm import VideoLLM
from liteframe.timing import Stopwatch
from liteframe.video import open_video, sample_frames


@dataclass
class Slot:
    """An image slot: sampled frames `first..last` (1-based)."""

    first: int
    last: int


@dataclass
class EncodedVideo:
    """A video's LLM tokens `(1, N, d_llm)`, the timestamps (s) of its sampled frames, its image slots, and what
    decoding, preprocessing and the ViT cost (ms; `total` their wall time)."""

    frames: int
    timestamps: list[float]
    slots: list[Slot]
    tokens: torch.Tensor
    latency_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Reply:
    """`latency_ms`: the video's encoding, this answer's prefill and generation, and `total` (both)."""

    answer: str
    visual_tokens: int
    latency_ms: dict[str, float]


def load_llm(model: str | Path, encoder: str, compression=None, adapter: str | None = None,
             device: str | None = None, dtype: torch.dtype | None = None):
    """A `VideoLLM` (or its `Bridge`) ready for `encode`/`answer`."""
    options = {"compression": compression, "adapter": adapter}
    accepted = inspect.signature(VideoLLM.from_pretrained).parameters
    for name, value in options.items():
        if value is not None and name not in accepted:
            raise InputError(f"--{name} needs the VideoLLM that takes {name}= (not in this build)")
    kwargs = {k: v for k, v in options.items() if v is not None}
    hf_logging.disable_progress_bar()  # the run's own progress bar is the one to read
    llm = VideoLLM.from_pretrained(model, encoder=encoder, device=device, dtype=dtype, **kwargs)
    return llm if hasattr(llm, "answer") else Bridge(llm)


class Bridge:
    """`encode`/`answer` over the current `VideoLLM` stages."""

    def __init__(self, llm: VideoLLM):
        self.llm = llm

    @torch.inference_mode()
    def encode(self, video: str | Path, frames: int = 16) -> EncodedVideo:
        llm = self.llm
        llm.encoder.check_frames(frames)
        watch = Stopwatch(llm.device)
        start = time.perf_counter()
        with watch("decode"):
            reader = open_video(video)
        with reader:
            with watch("decode"):
                strategy = "clips" if llm.encoder.frame_multiple > 1 else "uniform"
                sample = sample_frames(reader.info, frames, strategy=strategy)
            tokens = llm._encode(reader, sample.timestamps, watch)
        per_slot = llm.encoder.frames_per_slot(frames)
        slots = [Slot(first, first + per_slot - 1) for first in range(1, frames + 1, per_slot)]
        latency = {key: watch.ms.get(key, 0.0) for key in ("decode", "preprocess", "vit")}
        latency["total"] = (time.perf_counter() - start) * 1e3
        return EncodedVideo(frames, sample.timestamps.tolist(), slots, tokens, latency)

    @torch.inference_mode()
    def answer(self, enc: EncodedVideo, question: str, max_new_tokens: int = 64,
               slot_text: list[str | None] | None = None) -> Reply:
        from liteframe.llm.prompt import slot_labels  # the pre-`encode` VideoLLM's prompt labels

        labels = slot_labels(enc.timestamps, enc.slots[0].last - enc.slots[0].first + 1)
        if slot_text is not None:
            labels = [f"{text}\n{label}" if text else label for text, label in zip(slot_text, labels, strict=True)]
        start = time.perf_counter()
        _, new_ids, prefill, generation = self.llm._generate(enc.tokens, labels, question,
                                                             {"max_new_tokens": max_new_tokens})
        text = self.llm.tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        latency = {k: enc.latency_ms[k] for k in ("decode", "preprocess", "vit")}
        latency.update(llm_prefill=prefill, generation=generation,
                       total=enc.latency_ms["total"] + (time.perf_counter() - start) * 1e3)
        return Reply(text, enc.tokens.shape[1], latency)
