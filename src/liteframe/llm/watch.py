"""Watching a live video: frames sampled as they arrive (`liteframe.video.live.open_live`), encoded and prefilled
into the LLM's cache chunk by chunk in a background thread (`VideoContext`), and questions answered at any moment
from what was seen so far, in a time set by the question and the answer, not by how long the video has run.

`LiveSession(llm, open_live(source, rate))` (or `watch`, from a checkpoint folder) runs until its source ends or breaks
(the answers stay possible on what was seen) or `close()`. Frames the encoder cannot keep up with are dropped evenly by
the live reader, which says so in a warning; every answer carries the count. The cache keeps at most `max_tokens`
tokens, dropping the oldest slots (`VideoContext`), so memory stays flat however long it runs.
"""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch

from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError
from liteframe.llm.context import VideoContext
from liteframe.llm.videollm import VideoLLM
from liteframe.tables import format_table
from liteframe.timing import Stopwatch
from liteframe.video.live import LiveStream, open_live
from liteframe.video.preprocess import preprocess

ANSWER_KEYS = ("llm_prefill", "generation", "total")


@dataclass
class LiveAnswer:
    """One answer of a live session: `start..end` (s of video) the kept frames it saw, `frames` sampled so far,
    `dropped` frames dropped to keep up with real time, `evicted` slots dropped from the cache, `cache_tokens` in it,
    `prefill_tokens` the question's own, and `latency_ms` (`ANSWER_KEYS`) of this question alone."""

    answer: str
    start: float
    end: float
    frames: int
    dropped: int
    evicted: int
    cache_tokens: int
    prefill_tokens: int
    tokens: list[int]
    latency_ms: dict[str, float] = field(default_factory=dict)

    def render(self, as_json: bool = False) -> str:
        if as_json:
            return json.dumps(asdict(self))
        seen = (f"[{self.start:.1f}s-{self.end:.1f}s] {self.frames} frames sampled, {self.dropped} dropped, "
                f"{self.evicted} slots evicted, {self.cache_tokens} tokens cached")
        return "\n".join([f"{seen}: {self.answer}", format_table([self.latency_ms], ANSWER_KEYS)])


class LiveSession:
    """`llm` watching `stream`, a live source's sampled frames (`open_live`, whose chunks must be whole steps and
    clips of the encoder); see the module docstring. Frames are sized as for a video of `sized_as` frames (Qwen3's
    budget is over the whole video), resized on the device by torch where the family reads fixed squares (the live
    reader gives whole frames). `max_tokens`: the cache's budget (default: the LLM's context less `room` for a
    question and its answer). `latency_ms` sums the encoding stages so far (decoding is the reader's own thread);
    `error`: what stopped the encoding thread, if not the source's end."""

    def __init__(self, llm, stream: LiveStream, *, max_tokens: int | None = None, room: int = 512,
                 sized_as: int = 256):
        context = llm.family.context_length(llm.model)
        max_tokens = max_tokens or context - room
        if not 0 < max_tokens <= context:
            raise InputError(f"max_tokens {max_tokens}: must be positive and within the LLM's context of {context}")
        if llm.encoder.set_stage is not None:
            raise InputError(f"the {llm.encoder.name} encoder reduces the whole video at once: watching needs dense, "
                             "a grid reducer or a student")
        whole = math.lcm(llm.encoder.frame_multiple, llm.encoder.frames_per_step)
        if stream.chunk_frames % whole:
            raise InputError(f"chunks of {stream.chunk_frames} frames: the {llm.encoder.name} encoder takes "
                             f"multiples of {whole}")
        self.llm, self.stream, self.sized_as, self._whole, self._context = llm, stream, sized_as, whole, context
        self.context = VideoContext(llm, stream.rate, max_tokens)
        self.watch, self.error, self.frames = Stopwatch(llm.device), None, 0  # frames: sampled and encoded
        self._lock, self._ready = threading.Lock(), threading.Event()  # ready: a chunk is cached, or the end
        self._thread = threading.Thread(target=self._run, daemon=True, name="liteframe-watch")
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Until the source ends (or `timeout` s)."""
        self._thread.join(timeout)

    def close(self) -> None:
        self.stream.close()
        self._thread.join()

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @torch.inference_mode()
    def answer(self, question: str, max_new_tokens: int = 64, **generate_kwargs) -> LiveAnswer:
        """`question` about what was seen so far (greedy unless `generate_kwargs` say otherwise); waits for the
        chunk being encoded, or for the first chunk (one line if the source ends without one)."""
        if question is None or not question.strip():
            raise InputError("a question is needed")
        self._ready.wait()
        with self._lock:
            ctx = self.context
            if ctx.span is None:
                raise InputError(f"{self.stream.source}: the source ended before a frame was seen "
                                 f"({self.stream.end_reason or self.error})")
            start = time.perf_counter()
            ids, inputs = ctx.inputs(question)
            if ids.shape[1] > self._context:
                raise InputError(f"the prompt has {ids.shape[1]} tokens, more than the LLM's context of "
                                 f"{self._context}: a shorter question, or a smaller max_tokens")
            new, first, end = self.llm.generate(ids, inputs, ctx.cache, max_new_tokens, **generate_kwargs)
            latency = {"llm_prefill": (first - start) * 1e3, "generation": (end - first) * 1e3,
                       "total": (end - start) * 1e3}
            text = self.llm.tokenizer.decode(new, skip_special_tokens=True).strip()
            return LiveAnswer(text, *ctx.span, self.frames, self.stream.dropped, ctx.evicted, ctx.length,
                              ids.shape[1] - ctx.length, new, latency)

    @property
    def latency_ms(self) -> dict[str, float]:
        return {**self.watch.ms, "llm_prefill": self.context.prefill_ms}

    def _run(self) -> None:
        """The background thread: each chunk of the live reader -> pixels -> tokens -> the cache."""
        llm, whole = self.llm, self._whole
        try:
            with torch.inference_mode():
                for chunk in self.stream:
                    data, times = chunk.data, chunk.pts.tolist()
                    self.frames += len(times)
                    pad = -len(times) % whole  # only the source's last chunk: its last frame repeated
                    data = torch.cat([data, data[-1:].expand(pad, -1, -1, -1)])
                    times += times[-1:] * pad
                    with self.watch("preprocess"):
                        pixels = self._pixels(data)
                    with self.watch("vit"):
                        part = llm.encoder.finish([llm.encoder.encode_chunk(pixels)])
                    with self._lock:
                        self.context.add(part, times)
                    self._ready.set()
        except Exception as err:  # noqa: BLE001  reported by `error`, the answers so far stay possible
            self.error = err
        finally:
            self.stream.close()
            self._ready.set()

    def _pixels(self, data: torch.Tensor) -> torch.Tensor:
        """uint8 `(n, 3, H, W)` whole frames -> the encoder's `(1, n, 3, h, w)`."""
        llm, size = self.llm, self.llm.encoder.data.decode_size
        if size is not None:
            return preprocess(data, size, device=llm.device).to(llm.dtype)[None]
        return llm.encoder.prepare(data, llm.device, llm.dtype, self.sized_as)


def watch(source: str | Path, model: str | Path, questions: Iterable[str], *, encoder: str = "dense",
          compression: str | int | None = None, rate: float = 1.0, chunk_frames: int = 8, device: str | None = None,
          dtype: str = "auto", max_new_tokens: int = 64, speed: float = 1.0, **session_kwargs) -> Iterator[LiveAnswer]:
    """`liteframe watch` as a function: `source` opened first (`open_live` at `rate`, in chunks of `chunk_frames`,
    replayed at `speed`), then a checkpoint folder's VideoLLM watches it, and each of `questions` (an iterable read
    as they come, e.g. stdin's lines; blank ones skipped) is answered from what was seen when it came. Watching stops
    when the questions end. `session_kwargs`: `LiveSession`'s."""
    if rate <= 0 or chunk_frames < 1 or speed <= 0:
        raise InputError(f"rate {rate}, chunk_frames {chunk_frames}, speed {speed}: must be positive")
    device = resolve_device(device)
    with open_live(source, rate, chunk_frames, speed=speed) as stream:
        llm = VideoLLM.from_pretrained(model, encoder, compression, device=device, dtype=resolve_dtype(dtype, device))
        with LiveSession(llm, stream, **session_kwargs) as session:
            for question in questions:
                if question.strip():
                    yield session.answer(question.strip(), max_new_tokens)
