"""End-to-end latency on Qwen2.5-VL (`bench e2e --model-family qwen2.5-vl`): the dense model at few frames against
reducers at 8x more frames, rows as `bench e2e` gives them, in one process on one video.

Without `--model` a tiny random Qwen2.5-VL checkpoint is built in a temporary folder; `--random-size 7b` builds
Qwen2.5-VL-7B-Instruct's shapes with random weights on a CUDA device (weights do not change latency).
"""
from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Sequence

from transformers.utils import logging as hf_logging

from liteframe.bench.e2e import _row, synthetic_video
from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError
from liteframe.llm.qwen import MAX_PIXELS, MIN_PIXELS
from liteframe.llm.qwen_tiny import save_tiny_qwen
from liteframe.llm.qwen_videollm import QwenVideoLLM


def run(model: str | None = None, video: str | None = None, dense_frames: Sequence[int] = (16, 32, 64),
        frames: Sequence[int] = (128, 256, 512), encoders: Sequence[str] = ("wap",), random_size: str | None = None,
        device: str | None = None, dtype: str = "auto", repeats: int = 3, warmup: int = 1, new_tokens: int = 8,
        min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> list[dict]:
    """Rows in SPEC 8's order: dense at `dense_frames[i]`, then each of `encoders` at `frames[i]`; frames are resized
    into `[min_pixels, max_pixels]` (Qwen's video defaults)."""
    if repeats < 1 or warmup < 0 or new_tokens < 1:
        raise InputError("--repeats and --new-tokens must be at least 1, --warmup at least 0")
    if model and random_size:
        raise InputError("--model and --random-size exclude each other")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory(prefix="liteframe-e2e-qwen-") as tmp:
        tmp = Path(tmp)
        if random_size is not None:
            if device.type != "cuda":
                raise InputError(f"--random-size {random_size} builds billions of weights: it needs a CUDA device")
            llm = QwenVideoLLM.random(random_size, device=device, dtype=dtype)
        else:
            llm = QwenVideoLLM.from_pretrained(model or save_tiny_qwen(tmp / "tiny"), device=device, dtype=dtype)
        llm.min_pixels, llm.max_pixels = min_pixels, max_pixels
        video = video or str(synthetic_video(tmp / "synthetic.mp4"))
        settings = {"dense": llm, **{name: llm.with_encoder(name) for name in encoders}}
        rows = []
        for level in itertools.zip_longest(dense_frames, frames):
            for name, runner in settings.items():
                count = level[0] if name == "dense" else level[1]
                if count is not None:
                    rows.append(_row(name, runner, video, count, repeats, warmup, new_tokens))
    return rows
