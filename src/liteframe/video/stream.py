"""A video file -> model-ready pixels: `load_video` in one call, `stream_video` chunk by chunk while the caller works.

Both decode only the sampled frames. With `resize="swscale"` (the default) the decoder resizes each frame from YUV to
size x size RGB and the device only normalises (one fused multiply-add on uint8 input); `resize="torch"` converts
whole frames to RGB and resizes them with torch's antialiased bicubic, the path closest to InternVL's PIL reference
(see `preprocess` and docs/results/frontend.md).

`stream_video` decodes in a background thread: PyAV releases the GIL while FFmpeg decodes a packet and while swscale
converts a frame, so the caller's encoder runs meanwhile. Chunks pass through a bounded queue (`prefetch` chunks at
most wait), so memory stays bounded however long the video.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from liteframe.video.decode import VideoReader, open_video
from liteframe.video.preprocess import RESIZERS, normalize, preprocess
from liteframe.video.sampling import FrameSample, sample_frames


def load_video(path: str | os.PathLike, num_frames: int, strategy: str = "clips", size: int = 448,
               backend: str = "pyav", device: torch.device | str | None = None, resize: str = "swscale",
               keep_aspect: bool = False, **sampling_kw) -> tuple[torch.Tensor, FrameSample]:
    """A video file -> (pixels float32 (N, 3, size, size) on `device` (default CPU), the FrameSample that chose
    them); `sampling_kw` go to the strategy (e.g. rate=2.0, compression=16)."""
    _check_resize(resize)
    with open_video(path, backend) as reader:
        sample = sample_frames(reader.info, num_frames, strategy, **sampling_kw)
        pixels, _ = _decode(reader, sample.timestamps, size, keep_aspect, resize)
    return _to_device(pixels, device, torch.float32), sample


@dataclass
class Chunk:
    """`pixels` (n, 3, size, size) normalised, on the device, in the requested dtype; `pts` float64 (n,) seconds of
    the frames returned; `start`: the position of its first frame in the sample."""

    pixels: torch.Tensor
    pts: torch.Tensor
    start: int


class VideoStream:
    """Iterate for `Chunk`s. Honest stage times, read after (or during) the iteration: `decode_s` is the wall time
    the background thread spent decoding and resizing; `wait_s` the time the caller spent waiting for a chunk,
    which is all decoding added to the caller's own wall time. Overlapped decoding (decode_s - wait_s) is hidden
    behind the caller's work, so stage times do not add up to the total."""

    def __init__(self, path: str | os.PathLike, timestamps: np.ndarray, chunk_frames: int, size: int,
                 keep_aspect: bool, resize: str, device: torch.device | str | None, dtype: torch.dtype,
                 backend: str, prefetch: int):
        _check_resize(resize)
        if chunk_frames < 1 or prefetch < 1:
            raise ValueError(f"chunk_frames and prefetch must be at least 1, got {chunk_frames} and {prefetch}")
        self.path, self.timestamps, self.chunk_frames = path, timestamps, chunk_frames
        self.size, self.keep_aspect, self.resize = size, keep_aspect, resize
        self.device, self.dtype, self.backend, self.prefetch = device, dtype, backend, prefetch
        self.decode_s = self.wait_s = 0.0

    def __iter__(self) -> Iterator[Chunk]:
        chunks: queue.Queue = queue.Queue(self.prefetch)
        stop = threading.Event()
        worker = threading.Thread(target=self._decode_all, args=(chunks, stop), daemon=True,
                                  name="liteframe-decode")
        worker.start()
        try:
            for start in range(0, len(self.timestamps), self.chunk_frames):
                waited = time.perf_counter()
                item = chunks.get()
                self.wait_s += time.perf_counter() - waited
                if isinstance(item, BaseException):
                    raise item
                pixels, pts = item
                yield Chunk(_to_device(pixels, self.device, self.dtype), pts, start)
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
            with open_video(self.path, self.backend) as reader:
                for start in range(0, len(self.timestamps), self.chunk_frames):
                    if stop.is_set():
                        return
                    began = time.perf_counter()
                    item = _decode(reader, self.timestamps[start:start + self.chunk_frames], self.size,
                                   self.keep_aspect, self.resize)
                    self.decode_s += time.perf_counter() - began
                    chunks.put(item)
        except BaseException as err:  # handed to the caller, raised there
            chunks.put(err)


def stream_video(path: str | os.PathLike, sample: FrameSample | Sequence[float], chunk_frames: int,
                 size: int = 448, *, keep_aspect: bool = False, resize: str = "swscale",
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 backend: str = "pyav", prefetch: int = 2) -> VideoStream:
    """The sampled frames of a video in chunks of `chunk_frames` (the last may be shorter), decoded in a background
    thread while the caller works on the previous chunk: `for chunk in stream_video(...)` -> `Chunk` with pixels
    (n, 3, size, size) on `device` in `dtype`. `sample`: a FrameSample or timestamps (seconds)."""
    times = sample.timestamps if isinstance(sample, FrameSample) else np.asarray(sample, np.float64).reshape(-1)
    return VideoStream(path, times, chunk_frames, size, keep_aspect, resize, device, dtype, backend, prefetch)


def _decode(reader: VideoReader, timestamps: np.ndarray, size: int, keep_aspect: bool,
            resize: str) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (uint8 (n, 3, size, size) resized by swscale, or float32 normalised by the torch path; pts (n,)), on CPU."""
    if resize == "swscale":
        frames = reader.read(timestamps, size=size, keep_aspect=keep_aspect)
        return frames.data, frames.pts
    frames = reader.read(timestamps)
    return preprocess(frames.data, size, keep_aspect), frames.pts


def _to_device(pixels: torch.Tensor, device: torch.device | str | None, dtype: torch.dtype) -> torch.Tensor:
    if pixels.dtype == torch.uint8:
        return normalize(pixels, device, dtype)
    return pixels.to(device=device, dtype=dtype, non_blocking=True)


def _check_resize(resize: str) -> None:
    if resize not in RESIZERS:
        raise ValueError(f"unknown resize {resize!r}; choose from {', '.join(RESIZERS)}")


__all__ = ["Chunk", "VideoStream", "load_video", "stream_video"]
