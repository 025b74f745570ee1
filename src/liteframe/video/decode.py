"""Video decoding: open a file, read the frames shown at given times, and nothing more.

`open_video(path)` returns a `VideoReader` whose `.info` describes the stream and whose `.read(timestamps)` returns
one RGB frame per requested time. Timestamps are seconds from the start of the video stream. The frame returned for
time t is the last frame whose presentation time is <= t + half a frame interval: the frame on screen at t, with
enough slack that times computed as index / fps hit their own frame despite the container's rounding. A time before
the first frame gets the first frame; no other request ever gets a frame from after its time.

A read is four parts, one module each:
- `plan.py` (pure): the requested times cut into passes, each starting at a keyframe, so nearby targets share one;
- `passes.py`: the PyAV pass decoder, which runs a pass on its container (seeks, skips frames that cannot be an
  answer, recovers from seeks that land late and from damaged packets);
- `scale.py`: only returned frames are converted to RGB (and resized), by converters reused for the whole read;
- `fanout.py`: the passes of a plan run on as many threads as torch's intra-op threads, each thread with a decoder
  and converter of its own writing straight into the shared output.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterator, Sequence

import numpy as np
import torch

from liteframe.video.fanout import fan_out, read_threads
from liteframe.video.info import Frames, VideoDecodeError, VideoDecodeWarning, VideoInfo
from liteframe.video.passes import Decoded, Failure, PassDecoder
from liteframe.video.plan import Pass, late_requests, plan_read
from liteframe.video.scale import SCALERS, Converter, one_torch_thread, upright


def open_video(path: str | os.PathLike) -> "VideoReader":
    """Open a video file for reading; raises `VideoDecodeError` when it holds no decodable video."""
    return VideoReader(path)


class VideoReader:
    """An open video file (FFmpeg through PyAV): `.info`, `.read(timestamps) -> Frames`, `.count_decodable()`,
    `.close()`; a context manager."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        _check_file(self.path)
        self._decoder = PassDecoder(self.path)
        self.info: VideoInfo = self._decoder.probe()
        self._converter = Converter()
        self._workers: list[tuple[PassDecoder, Converter]] = []  # for the threads of a read (`_threads`)

    def read(self, timestamps: Sequence[float], size: int | None = None, scaler: str = "exact") -> Frames:
        """Frames shown at `timestamps` (seconds): (N,) -> Frames((N, 3, H, W) uint8, (N,) float64), in request
        order; full-size frames are stored channels-last. With `size`, each frame is resized to size x size RGB
        as it is decoded, by `scaler` (`SCALERS`), and stored channels-first.
        Frames that do not decode are replaced by the last frame decoded before them, with a warning that says where
        decoding failed and how many requests it touched."""
        if scaler not in SCALERS:
            raise ValueError(f"unknown scaler {scaler!r}; choose from {', '.join(SCALERS)}")
        times = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        width, height = self._decoder.raw_size if size is None else (size, size)
        # full frames are converted packed (channels-last), resized ones planar (channels-first)
        data = np.empty((len(times), height, width, 3) if size is None else (len(times), 3, height, width), np.uint8)
        pts = np.empty(len(times))
        slack = 0.5 / self.info.fps
        work = plan_read(times, slack, self._decoder.keyframe_times(), self._decoder.seekable)
        threads = read_threads(len(work))
        convert = None if size is None else scaler  # None: full-size RGB
        with one_torch_thread():  # before any thread of the read starts: see one_torch_thread
            workers = self._threads(threads) if threads > 1 else [(self._decoder, self._converter)]
            failures = fan_out(work, workers, lambda worker, items: _serve_all(*worker, items, data, pts, convert))
        failure = min((f for f in failures if f), key=lambda f: f.t, default=None)
        late = late_requests(pts, times, self.info.fps, slack, self.info.duration)
        where = f"of {self.info.duration:.2f}s"
        if failure:
            warnings.warn(VideoDecodeWarning(
                f"{self.path}: decoding failed at {failure.t:.2f}s {where} ({failure.reason}); {late} of {len(times)} "
                f"requested frames lie where nothing decoded and repeat the last frame decoded before them", late),
                stacklevel=2)
        elif late:
            warnings.warn(VideoDecodeWarning(
                f"{self.path}: the stream ended early at {pts.max():.2f}s {where}; {late} of {len(times)} requested "
                f"frames lie after it and repeat the last decoded frame", late), stacklevel=2)
        frames = torch.from_numpy(data)
        frames = frames.permute(0, 3, 1, 2) if size is None else frames
        return Frames(upright(frames, self._decoder.rotation), torch.from_numpy(pts))

    def count_decodable(self) -> tuple[int, str | None]:
        """Decode every frame from the first packet of the file, past damaged stretches: (how many decode, the
        first error or None)."""
        return self._decoder.count_decodable()

    def close(self) -> None:
        for decoder, _ in [(self._decoder, None), *self._workers]:
            decoder.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _threads(self, n: int) -> list[tuple[PassDecoder, Converter]]:
        """n (decoder, converter) pairs for the threads of a read, each decoder on a container of its own (kept
        open for the next read, closed with the reader)."""
        while len(self._workers) < n:
            self._workers.append((self._decoder.sibling(), Converter()))
        return self._workers[:n]


def _serve_all(decoder: PassDecoder, converter: Converter, work: Iterator[tuple[Pass, np.ndarray]],
               data: np.ndarray, pts: np.ndarray, scaler: str | None) -> Failure | None:
    """Run the passes of `work`, (pass, rows) pairs in file order, on one decoder, writing the answer to the pass's
    target i into `data[rows[i]]` (converted by `scaler`, None: full-size RGB) and `pts[rows[i]]` -> the first
    failure."""
    end: Decoded | None = None  # the stream's last frame, once a pass has reached it
    failure: Failure | None = None
    served = None  # (the frame last written, its row): sorted targets repeat it in a row
    with one_torch_thread():
        for plan, rows in work:
            if end is not None and plan.targets[0] >= end.t:
                answers = [end] * len(plan.targets)  # nothing lies past the end of the stream: no need to seek
            else:
                result = decoder.serve(plan)
                answers, failure = result.answers, failure or result.failure
                end = result.answers[-1] if result.ended else end
            for answer, j in zip(answers, rows):
                if served is not None and answer is served[0]:
                    data[j], pts[j] = data[served[1]], pts[served[1]]
                    continue
                converter.convert(answer.frame, data[j], scaler)
                pts[j], served = answer.t, (answer, j)
    return failure


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoDecodeError(f"{path}: is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")


__all__ = ["Frames", "VideoDecodeError", "VideoDecodeWarning", "VideoInfo", "VideoReader", "open_video"]
