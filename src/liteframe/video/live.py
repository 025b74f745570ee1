"""Live sources: the frames of a video that is still arriving, sampled at a fixed rate as they come.

`open_live(source, rate)` opens
- a file that is still being written: read as it grows, until the writer closes it (no process has it open for
  writing any more; Linux, checked with a read lease, which the kernel grants only then) or it stops growing for
  `idle_s` seconds;
- a pipe: `-` for stdin, or a FIFO path (opening waits for a writer), until the writer closes it or sends nothing
  for `idle_s` seconds;
- any URL PyAV opens (`rtsp://`, `http://`, `tcp://`, ...), with `idle_s` as FFmpeg's network timeout;
and returns a `LiveStream`. Iterate it for `Frames` chunks of `chunk_frames` frames (the last may be shorter):
uint8 (n, 3, H, W) RGB as displayed, with their pts in seconds from the start of the stream, the same times and
frames `VideoReader.read` returns for the finished file.

Sampling: the targets are t_k = t_0 + k / rate seconds of video time (t_0: the first frame's time), and the frame for
t_k is the last frame whose time is <= t_k + half a frame interval, as in `VideoReader.read`. A frame is known to be
the answer once the next one arrives, so a sampled frame is handed out one frame interval after it is decoded.

Decoding runs in a background thread, which keeps reading the source while the caller works; at most two chunks of
sampled frames wait for the caller, so a source fed faster than real time waits for the caller, and memory stays
bounded. Falling behind: real time is the first frame's time plus `speed` x the wall time since it arrived (`speed`
1 for a live source; a recording replayed at 4x has 4). When the newest frame waiting for the caller is more than
`max_lag_s` seconds behind it, the stream keeps 1 sampled frame in twice as many as before (every 2nd, then 4th,
... target), dropping the others evenly, and says so in a `VideoDecodeWarning` with the count (`dropped` keeps the
total); once the caller is back within a quarter of `max_lag_s` it keeps twice as many again.

A source that ends or breaks ends the iteration cleanly: the frames read before are handed out, `end_reason` says
why it ended, and a source that broke (a network error, an unreadable stretch) adds a warning. A source that cannot
be opened raises `VideoDecodeError` naming it.
"""
from __future__ import annotations

import fcntl
import math
import os
import select
import signal
import stat
import sys
import threading
import time
import warnings
from collections import deque

import av
import numpy as np
import torch

from liteframe.video.info import Frames, VideoDecodeError, VideoDecodeWarning
from liteframe.video.passes import reason
from liteframe.video.scale import Converter, upright

_POLL_S = 0.02  # how often a growing file or a quiet pipe is checked for new data


def open_live(source: str | os.PathLike, rate: float, chunk_frames: int = 8, *, idle_s: float = 10.0,
              max_lag_s: float = 2.0, speed: float = 1.0) -> "LiveStream":
    """A live source sampled at `rate` frames per second of video time -> a `LiveStream` (iterate for `Frames`
    chunks; see the module docstring). `source`: a path (a growing file or a FIFO), `-` for stdin, or a URL. Raises
    `VideoDecodeError` when it holds no readable video."""
    if rate <= 0 or chunk_frames < 1 or idle_s <= 0 or max_lag_s <= 0 or speed <= 0:
        raise ValueError(f"rate, idle_s, max_lag_s and speed must be positive and chunk_frames at least 1, got "
                         f"rate={rate}, chunk_frames={chunk_frames}, idle_s={idle_s}, max_lag_s={max_lag_s}, "
                         f"speed={speed}")
    source = str(source)
    stop = threading.Event()
    tail = None if "://" in source else _Tail.open(source, idle_s, stop)
    try:
        if tail is None:
            container = av.open(source, timeout=idle_s, metadata_errors="ignore")
        else:
            container = av.open(tail, metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        if tail is not None:
            tail.close()
        raise VideoDecodeError(f"{source}: not a readable video stream ({reason(err)})") from None
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        container.close()
        if tail is not None:
            tail.close()
        raise VideoDecodeError(f"{source}: no video stream (streams: {kinds})")
    return LiveStream(source, container, tail, stop, rate, chunk_frames, max_lag_s, speed)


class LiveStream:
    """Sampled frames of a live source, decoded in a background thread: iterate for `Frames` chunks. `fps`: the
    stream's declared frame rate (None if it declares none); `dropped`: sampled frames dropped to keep up with real
    time; `end_reason`: why the source ended (None while it runs). `close()` (or leaving a `with` block) stops
    reading."""

    def __init__(self, source: str, container, tail: "_Tail | None", stop: threading.Event, rate: float,
                 chunk_frames: int, max_lag_s: float, speed: float):
        self.source, self.rate, self.chunk_frames = source, rate, chunk_frames
        self.max_lag_s, self.speed = max_lag_s, speed
        self._container, self._tail, self._stop = container, tail, stop
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"
        declared = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(declared) if declared else None
        self.dropped, self.end_reason = 0, None
        self._broke: str | None = None  # why the source broke
        self._read_to = 0.0  # the time of the last frame decoded (seconds of video)
        self._failed, self._failure = 0, None  # packets that did not decode, the first reason
        self._pending: deque[tuple[int, float, np.ndarray]] = deque()  # (target index, pts, RGB) for the caller
        self._capacity = 2 * chunk_frames
        self._keep_every = 1  # keep targets k with k % keep_every == 0
        self._first: tuple[float, float] | None = None  # (video time, wall time) of the first frame
        self._rotation, self._size = 0, None  # the first frame's: later frames are converted to its size
        self._converter = Converter()
        self._error: BaseException | None = None  # an unexpected error of the background thread, for the caller
        self._done = self._told = False  # the source has ended; the caller has been told how
        self._cond = threading.Condition()
        self._worker = threading.Thread(target=self._run, daemon=True, name="liteframe-live")
        self._worker.start()

    def __iter__(self) -> "LiveStream":
        return self

    def __next__(self) -> Frames:
        with self._cond:
            while len(self._pending) < self.chunk_frames and not self._done:
                self._cond.wait(0.1)  # a timeout keeps the caller interruptible
            if not self._pending:
                if self._error is not None:
                    raise self._error
                self._finish()
                raise StopIteration
            self._keep_up()
            items = [self._pending.popleft() for _ in range(min(self.chunk_frames, len(self._pending)))]
            self._cond.notify_all()
        data = torch.from_numpy(np.stack([rgb for _, _, rgb in items])).permute(0, 3, 1, 2)
        return Frames(upright(data, self._rotation), torch.tensor([t for _, t, _ in items], dtype=torch.float64))

    def close(self) -> None:
        """Stop reading the source; the background thread closes it."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._worker.join()

    def __enter__(self) -> "LiveStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _keep_up(self) -> None:
        """With the lock held, before a chunk is taken: drop sampled frames evenly while the caller lags behind real
        time (see the module docstring)."""
        video_t, wall_t = self._first
        lag = video_t + self.speed * (time.monotonic() - wall_t) - self._pending[-1][1]
        if lag > self.max_lag_s:
            self._keep_every *= 2
            kept = deque(item for item in self._pending if item[0] % self._keep_every == 0) or deque(
                [self._pending[-1]])
            self.dropped += len(self._pending) - len(kept)
            self._pending = kept
            warnings.warn(f"{self.source}: {lag:.1f} s behind real time; keeping 1 in {self._keep_every} sampled "
                          f"frames ({self.dropped} dropped so far)", VideoDecodeWarning, stacklevel=3)
        elif lag < self.max_lag_s / 4 and self._keep_every > 1:
            self._keep_every //= 2

    def _finish(self) -> None:
        """At the end, once: warn of a source that broke or of packets that did not decode."""
        if self._told:
            return
        self._told = True
        if self._broke:
            warnings.warn(f"{self.source}: the stream broke after {self._read_to:.2f} s of video ({self._broke}); "
                          f"what was read before is kept", VideoDecodeWarning, stacklevel=3)
        if self._failed:
            warnings.warn(f"{self.source}: {self._failed} packets did not decode ({self._failure}); the frames "
                          f"around them repeat the last frame decoded", VideoDecodeWarning, stacklevel=3)

    def _run(self) -> None:
        """The background thread: decode, sample, and hand out, until the source ends, breaks, or `close()`."""
        try:
            self._sample_all()
            if self._stop.is_set():
                self.end_reason = "closed"
            else:
                self.end_reason = (self._tail.ended if self._tail is not None else None) or "end of stream"
        except (av.FFmpegError, OSError) as err:
            self._broke = reason(err)
            self.end_reason = f"broke: {self._broke}"
        except BaseException as err:  # a bug, not the source: raised in the caller's thread
            self._error = err
        finally:
            self._container.close()
            if self._tail is not None:
                self._tail.close()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _sample_all(self) -> None:
        stream = self._stream
        tb = stream.time_base or 1
        start = stream.start_time
        step = 1.0 / (self.fps or 25.0)  # a frame interval: the slack, and the spacing of frames without timestamps
        prev, k, last, base = None, 0, -math.inf, 0.0
        try:
            for packet in self._container.demux(stream):
                if self._stop.is_set():
                    return
                try:
                    frames = stream.decode(packet)
                except av.FFmpegError as err:
                    self._failed += 1
                    self._failure = self._failure or reason(err)
                    continue
                for frame in frames:
                    pts = frame.pts if frame.pts is not None else frame.dts
                    if pts is not None and start is None:
                        start = pts
                    t = max(last + step, 0.0) if pts is None else float((pts - start) * tb)
                    if t <= last:
                        continue  # out of order
                    last = self._read_to = t
                    if prev is None:
                        base, self._rotation, self._size = t, (-frame.rotation) % 360, (frame.width, frame.height)
                        with self._cond:
                            self._first = (t, time.monotonic())
                    while prev is not None and base + k / self.rate + step / 2 < t:  # the frame before t answers
                        self._hand_out(k, prev)
                        k += 1
                    prev = [t, frame, None]  # its RGB, once converted, for the next targets it answers
        finally:  # ended or broke: the last frame answers the targets of its frame interval, as if the next came
            while prev is not None and not self._stop.is_set() and base + k / self.rate + step / 2 < last + step:
                self._hand_out(k, prev)
                k += 1

    def _hand_out(self, k: int, answer: list) -> None:
        """Target k's frame (`answer`: [pts, frame, RGB or None]) to the caller, unless dropped; waits while two
        chunks wait for the caller."""
        with self._cond:
            if k % self._keep_every:
                self.dropped += 1
                return
        if answer[2] is None:
            answer[2] = self._converter.rgb(answer[1], *self._size)
        t, _, rgb = answer
        with self._cond:
            while len(self._pending) >= self._capacity and not self._stop.is_set():
                self._cond.wait()
            self._pending.append((k, t, rgb))
            self._cond.notify_all()


class _Tail:
    """A growing file or a pipe as a file object for PyAV: `read` waits for data, and returns b"" (the end) when
    the writer is gone or after `idle_s` seconds without new data (`ended` says which)."""

    def __init__(self, fd: int, pipe: bool, owned: bool, idle_s: float, stop: threading.Event):
        self.fd, self.pipe, self.owned, self.idle_s, self.stop = fd, pipe, owned, idle_s, stop
        self.ended: str | None = None
        self._last = time.monotonic()
        if not pipe and hasattr(fcntl, "F_SETSIG"):
            # a writer opening the file while `_writers_gone` holds its lease signals us: SIGURG, ignored by
            # default, instead of SIGIO, whose default ends the process
            fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)

    @classmethod
    def open(cls, source: str, idle_s: float, stop: threading.Event) -> "_Tail":
        if source == "-":
            return cls(sys.stdin.buffer.fileno(), pipe=True, owned=False, idle_s=idle_s, stop=stop)
        try:
            mode = os.stat(source).st_mode
        except OSError as err:
            raise VideoDecodeError(f"{source}: {err.strerror.lower()}") from None
        if not (stat.S_ISFIFO(mode) or stat.S_ISREG(mode)):
            raise VideoDecodeError(f"{source}: not a file, a pipe or a URL")
        return cls(os.open(source, os.O_RDONLY), pipe=stat.S_ISFIFO(mode), owned=True, idle_s=idle_s, stop=stop)

    def read(self, n: int) -> bytes:
        while not self.stop.is_set():
            if self.pipe:
                if select.select([self.fd], [], [], _POLL_S)[0]:
                    data = os.read(self.fd, n)
                    if not data:
                        self.ended = "the writer closed the pipe"
                    self._last = time.monotonic()
                    return data
            else:
                data = os.read(self.fd, n)
                if data:
                    self._last = time.monotonic()
                    return data
                if _writers_gone(self.fd):
                    data = os.read(self.fd, n)  # what the writer wrote just before it closed
                    self.ended = None if data else "the writer closed the file"
                    return data
                time.sleep(_POLL_S)
            if time.monotonic() - self._last > self.idle_s:
                self.ended = f"no new data for {self.idle_s:g} s"
                return b""
        return b""

    def close(self) -> None:
        if self.owned:
            os.close(self.fd)
            self.owned = False


def _writers_gone(fd: int) -> bool:
    """Whether no process has the file open for writing: Linux grants a read lease only then. False where leases
    are not available (another user's file, another system): the file then ends by `idle_s` alone."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except (OSError, AttributeError):
        return False
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return True


__all__ = ["LiveStream", "open_live"]
