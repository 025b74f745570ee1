"""A video file -> model-ready pixels: `load_video` in one call, `stream_video` chunk by chunk while the caller works.

Both decode only the sampled frames. With `resize="exact"` (the default) or `"swscale"` the decoder resizes each
frame to size x size uint8 RGB (`SCALERS` in scale.py) and the device only normalises (one fused multiply-add on
uint8 input); `resize="torch"` converts whole frames to RGB and resizes them in float with torch's antialiased
bicubic on the device (see `preprocess` and docs/results/frontend.md).

`stream_video` decodes in a background thread: PyAV releases the GIL while FFmpeg decodes a packet and while swscale
converts a frame, so the caller's encoder runs meanwhile. Chunks pass through a bounded queue (`prefetch` chunks at
most wait), so memory stays bounded however long the video. `prefetch=0` decodes in the caller's thread instead: the
sequential path, kept to measure what the overlap gains.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from contextlib import closing, nullcontext
from dataclasses import dataclass
from typing import ContextManager, Iterator, Sequence

import numpy as np
import torch

from liteframe.video.decode import VideoReader, open_video
from liteframe.video.preprocess import RESIZERS, normalize, preprocess
from liteframe.video.sampling import FrameSample, sample_frames


def load_video(path: str | os.PathLike, num_frames: int, strategy: str = "clips", size: int = 448,
               device: torch.device | str | None = None, resize: str = "exact",
               **sampling_kw) -> tuple[torch.Tensor, FrameSample]:
    """A video file -> (pixels float32 (N, 3, size, size) on `device` (default CPU), the FrameSample that chose
    them); `sampling_kw` go to the strategy (e.g. rate=2.0, compression=16)."""
    _check_resize(resize)
    with open_video(path) as reader:
        sample = sample_frames(reader.info, num_frames, strategy, **sampling_kw)
        frames, _ = _decode(reader, sample.timestamps, size, resize)
    return _prepare(frames, size, device, torch.float32), sample


@dataclass
class Chunk:
    """`pixels` (n, 3, size, size) normalised, on the device, in the requested dtype; `pts` float64 (n,) seconds of
    the frames returned; `start`: the position of its first frame in the sample."""

    pixels: torch.Tensor
    pts: torch.Tensor
    start: int


class VideoStream:
    """Iterate for `Chunk`s. Honest stage times, read after (or during) the iteration: `decode_s` is the wall time
    spent decoding (and resizing, unless `resize="torch"`); `preprocess_s` the caller's time turning decoded frames
    into pixels (normalising, or the torch resize); `wait_s` the time the caller spent waiting for a chunk, which is
    all that decoding added to the caller's own wall time. With `prefetch` >= 1 a background thread decodes, and its
    overlapped time (decode_s - wait_s) is hidden behind the caller's work, so stage times do not add up to the
    total; with `prefetch=0` the caller's thread decodes each chunk when it asks for it (wait_s = decode_s)."""

    def __init__(self, source: str | os.PathLike | VideoReader, timestamps: np.ndarray, chunk_frames: int,
                 size: int, resize: str, device: torch.device | str | None, dtype: torch.dtype, prefetch: int):
        _check_resize(resize)
        if chunk_frames < 1 or prefetch < 0:
            raise ValueError(f"chunk_frames must be at least 1 and prefetch at least 0, got {chunk_frames} and "
                             f"{prefetch}")
        self.source, self.timestamps, self.chunk_frames = source, timestamps, chunk_frames
        self.size, self.resize = size, resize
        self.device, self.dtype, self.prefetch = device, dtype, prefetch
        self.decode_s = self.preprocess_s = self.wait_s = 0.0

    def __iter__(self) -> Iterator[Chunk]:
        starts = range(0, len(self.timestamps), self.chunk_frames)
        with closing(self._foreground() if self.prefetch == 0 else self._background()) as frames:
            for start, (data, pts) in zip(starts, frames):
                began = time.perf_counter()
                pixels = _prepare(data, self.size, self.device, self.dtype)
                self.preprocess_s += time.perf_counter() - began
                yield Chunk(pixels, pts, start)

    def _foreground(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        with self._open() as reader:
            for start in range(0, len(self.timestamps), self.chunk_frames):
                item = self._decode(reader, start)
                self.wait_s = self.decode_s  # the caller waits for all of it
                yield item

    def _background(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        chunks: queue.Queue = queue.Queue(self.prefetch)
        stop = threading.Event()
        worker = threading.Thread(target=self._decode_all, args=(chunks, stop), daemon=True,
                                  name="liteframe-decode")
        worker.start()
        try:
            for _ in range(0, len(self.timestamps), self.chunk_frames):
                waited = time.perf_counter()
                item = chunks.get()
                self.wait_s += time.perf_counter() - waited
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():  # unblock a worker waiting to put a chunk nobody will take
                try:
                    chunks.get(timeout=0.05)
                except queue.Empty:
                    pass
            worker.join()

    def _decode_all(self, chunks: queue.Queue, stop: threading.Event) -> None:
        """The background thread: open, decode chunk after chunk into the queue; an exception goes in its place."""
        try:
            with self._open() as reader:
                for start in range(0, len(self.timestamps), self.chunk_frames):
                    if stop.is_set():
                        return
                    chunks.put(self._decode(reader, start))
        except BaseException as err:  # handed to the caller, raised there
            chunks.put(err)

    def _open(self) -> ContextManager[VideoReader]:
        """A reader for the stream: the caller's own (left open), else the file opened for the iteration."""
        if isinstance(self.source, VideoReader):
            return nullcontext(self.source)
        return open_video(self.source)

    def _decode(self, reader: VideoReader, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        began = time.perf_counter()
        item = _decode(reader, self.timestamps[start:start + self.chunk_frames], self.size, self.resize)
        self.decode_s += time.perf_counter() - began
        return item


def stream_video(source: str | os.PathLike | VideoReader, sample: FrameSample | Sequence[float], chunk_frames: int,
                 size: int | None = 448, *, resize: str = "exact", device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32, prefetch: int = 2) -> VideoStream:
    """The sampled frames of a video in chunks of `chunk_frames` (the last may be shorter), decoded in a background
    thread while the caller works on the previous chunk (`prefetch` chunks ahead at most; 0: no thread, each chunk
    decoded when asked for): `for chunk in stream_video(...)` -> `Chunk` with pixels (n, 3, size, size) on `device`
    in `dtype` (`size` None: the uint8 (n, 3, H, W) frames as decoded, on the CPU, for a caller that resizes them
    itself). `source`: a path, or an open reader (read by the stream, closed by its owner, not used by anyone
    else during the iteration). `sample`: a FrameSample or timestamps (seconds)."""
    times = sample.timestamps if isinstance(sample, FrameSample) else np.asarray(sample, np.float64).reshape(-1)
    return VideoStream(source, times, chunk_frames, size, resize, device, dtype, prefetch)


def _decode(reader: VideoReader, timestamps: np.ndarray, size: int | None,
            resize: str) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (uint8 (n, 3, size, size) resized by the decoder, or (n, 3, H, W) full frames for the torch resize; pts
    (n,))."""
    if resize == "torch" or size is None:
        frames = reader.read(timestamps)
    else:
        frames = reader.read(timestamps, size=size, scaler=resize)
    return frames.data, frames.pts


def _prepare(frames: torch.Tensor, size: int | None, device: torch.device | str | None,
             dtype: torch.dtype) -> torch.Tensor:
    """uint8 (n, 3, H, W) -> `dtype` (n, 3, size, size) on `device`: frames already resized are only normalised; full
    frames are resized by torch on the device. `size` None: the frames as decoded."""
    if size is None:
        return frames
    if frames.shape[-2:] == (size, size):
        return normalize(frames, device, dtype)
    return preprocess(frames, size, device=device).to(dtype)


def _check_resize(resize: str) -> None:
    if resize not in RESIZERS:
        raise ValueError(f"unknown resize {resize!r}; choose from {', '.join(RESIZERS)}")


__all__ = ["Chunk", "VideoStream", "load_video", "stream_video"]
