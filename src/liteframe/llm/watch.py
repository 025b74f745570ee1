"""Watching a live video: frames sampled as they arrive (`liteframe.video.live.open_live`), encoded and prefilled
into the LLM's cache chunk by chunk in a background thread (`VideoContext`), and questions answered at any moment
from what was seen so far, in a time set by the question and the answer, not by how long the video has run.

`LiveSession(llm, open_live(source, rate))` (or `watch`, from a checkpoint folder) runs until its source ends or breaks
(the answers stay possible on what was seen) or `close()`. Frames the encoder cannot keep up with are dropped evenly by
the live reader, which says so in a warning; every answer carries the count. The cache keeps at most `max_tokens`
tokens, dropping the oldest slots (`VideoContext`), so memory stays flat however long it runs.
"""
from __future__ import annotations

import itertools
import json
import math
import queue
import threading
import time
from concurrent.futures import Future
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

ANSWER_KEYS = ("wait", "llm_prefill", "generation", "total")


@dataclass
class LiveAnswer:
    """One answer of a live session: `start..end` (s of video) the kept frames it saw, `frames` sampled so far,
    `dropped` frames dropped to keep up with real time, `evicted` slots dropped from the cache, `cache_tokens` in it,
    `prefill_tokens` the question's own, and `latency_ms` (`ANSWER_KEYS`) of this question alone: `wait` for the
    chunk in flight, then its prefill and generation; `total` from the asking to the last token."""

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
    `error`: what stopped the encoding, if not the source's end. One worker thread runs the model: questions
    between chunks, ahead of the next chunk."""

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
        self.context = VideoContext(llm, stream.rate, max_tokens, live=True)
        self.watch, self.error, self.frames = Stopwatch(llm.device), None, 0  # frames: sampled and encoded
        self._ready, self._ended = threading.Event(), threading.Event()  # ready: a chunk is cached, or the end
        self._jobs, self._order, self._closed = queue.PriorityQueue(), itertools.count(), False
        self._worker = threading.Thread(target=self._work, daemon=True, name="liteframe-watch")
        self._feeder = threading.Thread(target=self._feed, daemon=True, name="liteframe-watch-feed")
        self._worker.start()
        self._feeder.start()

    @property
    def running(self) -> bool:
        """Whether frames may still come: the source has not ended and the session is open."""
        return not self._ended.is_set()

    def wait(self, timeout: float | None = None) -> None:
        """Until the source has ended and every chunk read is cached (or `timeout` s)."""
        self._ended.wait(timeout)

    def close(self) -> None:
        """Stop reading the source and the threads; later questions are refused."""
        if not self._closed:
            self._closed = True
            self.stream.close()
            self._put(0, ("stop",))
            self._feeder.join()
            self._worker.join()

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def answer(self, question: str, max_new_tokens: int = 64, **generate_kwargs) -> LiveAnswer:
        """`question` about what was seen so far (greedy unless `generate_kwargs` say otherwise), answered between
        two chunks (`wait` in the latency: for the chunk in flight) or, before the first chunk, once it is cached
        (one line if the source ends without one)."""
        if question is None or not question.strip():
            raise InputError("a question is needed")
        if self._closed:
            raise InputError("this live session is closed")
        self._ready.wait()
        if self.context.span is None:
            raise InputError(f"{self.stream.source}: the source ended before a frame was seen "
                             f"({self.stream.end_reason or self.error})")
        answer = Future()
        self._put(0, ("question", (question, max_new_tokens, generate_kwargs, time.perf_counter()), answer))
        return answer.result()

    @property
    def latency_ms(self) -> dict[str, float]:
        return {**self.watch.ms, "llm_prefill": self.context.prefill_ms}

    def _put(self, priority: int, job: tuple) -> None:
        self._jobs.put((priority, next(self._order), job))

    def _feed(self) -> None:
        """The feeder thread: the live reader's chunks to the worker one at a time (the next is read once this one is
        cached, so a slow worker makes the reader drop frames), then the end."""
        try:
            for chunk in self.stream:
                done = threading.Event()
                self._put(1, ("chunk", chunk, done))
                while not done.wait(0.1) and not self._closed:
                    pass
        except Exception as err:  # noqa: BLE001  a bug of the reader: reported by `error`
            self.error = err
        finally:
            self._put(1, ("end",))

    def _work(self) -> None:
        """The worker thread, the only one running the model (on a CPU, two threads each with its own thread pool
        would contend for the cores): questions first, then chunks, until `close()`."""
        with torch.inference_mode():
            while True:
                _, _, job = self._jobs.get()
                if job[0] == "stop":
                    break
                if job[0] == "question":
                    args, answer = job[1:]
                    try:
                        answer.set_result(self._answer(*args))
                    except Exception as err:  # noqa: BLE001  raised in the asking thread
                        answer.set_exception(err)
                elif job[0] == "chunk":
                    try:
                        if self.error is None:
                            self._add(job[1])
                    except Exception as err:  # noqa: BLE001  reported by `error`, the answers so far stay possible
                        self.error = err
                    finally:
                        job[2].set()
                        self._ready.set()
                else:
                    self._ended.set()
                    self._ready.set()
        self._ended.set()
        self._ready.set()

    def _add(self, chunk) -> None:
        """A chunk of the live reader -> pixels -> tokens -> the cache."""
        llm = self.llm
        data, times = chunk.data, chunk.pts.tolist()
        self.frames += len(times)
        pad = -len(times) % self._whole  # only the source's last chunk: its last frame repeated
        data = torch.cat([data, data[-1:].expand(pad, -1, -1, -1)])
        times += times[-1:] * pad
        with self.watch("preprocess"):
            pixels = self._pixels(data)
        with self.watch("vit"):
            part = llm.encoder.finish([llm.encoder.encode_chunk(pixels)])
        self.context.add(part, times)

    def _answer(self, question: str, max_new_tokens: int, generate_kwargs: dict, asked: float) -> LiveAnswer:
        ctx, start = self.context, time.perf_counter()
        ids, inputs = ctx.inputs(question)
        if ids.shape[1] > self._context:
            raise InputError(f"the prompt has {ids.shape[1]} tokens, more than the LLM's context of "
                             f"{self._context}: a shorter question, or a smaller max_tokens")
        new, first, end = self.llm.generate(ids, inputs, ctx.cache, max_new_tokens, **generate_kwargs)
        latency = {"wait": (start - asked) * 1e3, "llm_prefill": (first - start) * 1e3,
                   "generation": (end - first) * 1e3, "total": (end - asked) * 1e3}
        text = self.llm.tokenizer.decode(new, skip_special_tokens=True).strip()
        return LiveAnswer(text, *ctx.span, self.frames, self.stream.dropped, ctx.evicted, ctx.length,
                          ids.shape[1] - ctx.length, new, latency)

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
