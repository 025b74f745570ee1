"""Ask a Qwen2.5-VL checkpoint about a video, dense or through a reducer, timed as `VideoLLM.ask` is.

video -> sampled frames -> Qwen preprocessing (smart_resize, frame pairs) -> ViT + merger [+ reducer on the merged
grid] -> tokens into the prompt's `<|video_pad|>` run with liteframe's mRoPE positions -> the LLM -> answer.
`ask` returns `liteframe.llm.Answer`, so `bench e2e` can time this class as it times `VideoLLM`. There is no
LiteFrame student for Qwen's ViT yet.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, LogitsProcessorList, Qwen2_5_VLForConditionalGeneration

from liteframe.compression import get_compression
from liteframe.errors import InputError
from liteframe.llm.qwen import (
    FRAMES_PER_STEP, MAX_PIXELS, MIN_PIXELS, encode_video, load_qwen, preprocess_qwen, prompt_inputs,
    seconds_per_step,
)
from liteframe.llm.qwen_tiny import build_qwen_tokenizer, qwen_config
from liteframe.llm.videollm import LATENCY_KEYS, Answer, _FirstLogits
from liteframe.reduce import REDUCERS, get_reducer
from liteframe.timing import Stopwatch, synchronize
from liteframe.video import open_video, sample_frames


class QwenVideoLLM:
    """A Qwen2.5-VL model whose visual tokens come from its ViT (`dense`) or a reducer over its merged grid."""

    def __init__(self, model: Qwen2_5_VLForConditionalGeneration, tokenizer, encoder: str = "dense",
                 compression=None, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
        if encoder != "dense" and encoder not in REDUCERS:
            raise InputError(f"unknown encoder {encoder!r} for Qwen2.5-VL; choose dense or one of "
                             f"{', '.join(REDUCERS.names())} (there is no LiteFrame student for Qwen's ViT yet)")
        self.model, self.tokenizer, self.encoder = model.eval(), tokenizer, encoder
        self.reducer = None if encoder == "dense" else get_reducer(encoder)
        self.compression = get_compression(compression)
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.device = model.device

    @classmethod
    def from_pretrained(cls, directory: str | Path, encoder: str = "dense", device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, compression=None) -> QwenVideoLLM:
        model, tokenizer = load_qwen(directory, dtype=dtype, device=device)
        return cls(model, tokenizer, encoder, compression)

    @classmethod
    def random(cls, size: str = "7b", device: str | torch.device = "cuda", dtype: torch.dtype = torch.bfloat16,
               encoder: str = "dense") -> QwenVideoLLM:
        """Qwen2.5-VL with `size`'s shapes (`7b`: Qwen2.5-VL-7B-Instruct) and random weights, built on `device`:
        latency does not depend on the weights."""
        tokenizer = build_qwen_tokenizer()
        config = qwen_config(size)
        config.video_token_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
        with torch.device(device):  # random init of billions of weights is slow on a CPU
            model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
        with tempfile.TemporaryDirectory() as tmp:  # reload as a checkpoint's tokenizer is loaded
            tokenizer.save_pretrained(tmp)
            tokenizer = AutoTokenizer.from_pretrained(tmp)
        return cls(model, tokenizer, encoder)

    def with_encoder(self, encoder: str) -> QwenVideoLLM:
        """The same model (shared, not copied) behind another encoder."""
        return QwenVideoLLM(self.model, self.tokenizer, encoder, self.compression, self.min_pixels, self.max_pixels)

    def check_frames(self, frames: int) -> None:
        """Grid reducers take whole blocks: a multiple of `compression.clip_frames(2)` frames (8 at 16x)."""
        multiple = self.compression.clip_frames(FRAMES_PER_STEP) if self.reducer and self.reducer.keeps_grid else 1
        if frames < 1 or frames % multiple:
            raise InputError(f"--frames {frames}: the {self.encoder} encoder on Qwen2.5-VL takes a positive multiple "
                             f"of {multiple} frames")

    @torch.inference_mode()
    def ask(self, video: str | Path, question: str, frames: int = 16, repeats: int = 1, warmup: int = 0,
            **generate_kwargs) -> Answer:
        """Answer `question` about `video` from `frames` uniformly sampled frames; latency is the median of `repeats`
        runs after `warmup` runs."""
        if repeats < 1 or warmup < 0:
            raise InputError(f"repeats {repeats}, warmup {warmup}: need at least 1 repeat and no negative warm-up")
        self.check_frames(frames)
        runs = [self._run(video, question, frames, generate_kwargs) for _ in range(warmup + repeats)]
        answer = runs[-1]
        answer.latency_ms = {k: statistics.median(r.latency_ms[k] for r in runs[warmup:]) for k in LATENCY_KEYS}
        return answer

    def _run(self, video, question: str, frames: int, generate_kwargs: dict) -> Answer:
        watch = Stopwatch(self.device)
        start = time.perf_counter()
        with watch("decode"):
            with open_video(video) as reader:
                sample = sample_frames(reader.info, frames, strategy="uniform")
                raw = reader.read(sample.timestamps).data
        with watch("preprocess"):
            pixels, grid = preprocess_qwen(raw, self.min_pixels, self.max_pixels, device=self.device)
        with watch("vit"):
            encoded = encode_video(self.model, pixels, grid, seconds_per_step(sample.timestamps), self.reducer,
                                   self.compression)
        synchronize(self.device)
        prefill_start = time.perf_counter()
        inputs = prompt_inputs(self.model, self.tokenizer, encoded, question)
        first = _FirstLogits(self.device)
        kwargs = {"max_new_tokens": 64, "do_sample": False, "pad_token_id": self.tokenizer.pad_token_id,
                  **generate_kwargs}
        kwargs["logits_processor"] = LogitsProcessorList([*kwargs.get("logits_processor", []), first])
        out = self.model.generate(**inputs, **kwargs)
        synchronize(self.device)
        end = time.perf_counter()
        new = out[0, inputs["input_ids"].shape[1]:].tolist()
        latency = dict(watch.ms, llm_prefill=(first.at - prefill_start) * 1e3, generation=(end - first.at) * 1e3,
                       total=(end - start) * 1e3)
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Answer(text.strip(), frames, encoded.tokens.shape[0], inputs["input_ids"].shape[1], new, self.encoder,
                      sample.timestamps.tolist(), latency)
