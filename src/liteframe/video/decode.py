"""Video decoding: open a file, read the frames shown at given times, and nothing more.

`open_video(path)` returns a `VideoReader` whose `.info` describes the stream and whose `.read(timestamps)` returns
one RGB frame per requested time. Timestamps are seconds from the start of the video stream. The frame returned for
time t is the last frame whose presentation time is <= t + half a frame interval: the frame on screen at t, with
enough slack that times computed as index / fps hit their own frame despite the container's rounding. A time before
the first frame gets the first frame.

Reading sorts the targets, seeks to the keyframe before a target only when that skips work (an indexed keyframe lies
between the current decode position and the target) and otherwise decodes forward, so nearby targets share one pass.
Packets are demuxed a few ahead of the decoder: non-reference frames (B-frames) that cannot be the answer are not
decoded at all, and when the next target will be reached by a seek, the decoder is drained as soon as every frame up
to the target is in it, instead of decoding further frames only to find where the target's frame ends. Only returned
frames are converted to RGB, by one converter reused for the whole read.
Backends are registered in `DECODERS` so that another library (torchcodec, decord) can be added without touching
callers.
"""
from __future__ import annotations

import math
import os
import warnings
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Sequence

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from liteframe.errors import InputError
from liteframe.registry import Registry

DECODERS: Registry[type] = Registry("video decoder")

# Without a keyframe index, a target this far ahead of the decode position is reached by seeking.
_SEEK_WITHOUT_INDEX_S = 2.0
# Packets demuxed ahead of the decoder: enough to see past H.264/HEVC reordering (up to 3-4 B-frames in a row).
_LOOKAHEAD = 6


class VideoDecodeError(InputError):
    """A video file that cannot be decoded: the message names the file and the reason."""


class VideoDecodeWarning(UserWarning):
    """A video that decoded only in part, or whose frames had to be repeated."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video stream declares. `width`/`height` are after rotation; `rotation` is the clockwise angle (0, 90,
    180, 270) applied for display; `frame_count` is the declared count (None when the container has none)."""

    path: str
    container: str
    codec: str
    width: int
    height: int
    rotation: int
    fps: float
    duration: float
    frame_count: int | None

    @property
    def num_frames(self) -> int:
        """The declared frame count, else an estimate from duration x fps (at least 1)."""
        return self.frame_count or max(1, round(self.duration * self.fps))


@dataclass
class Frames:
    """`data` uint8 (N, 3, H, W) RGB; `pts` float64 (N,) seconds from the start of the stream."""

    data: torch.Tensor
    pts: torch.Tensor


def open_video(path: str | os.PathLike, backend: str = "pyav") -> "VideoReader":
    """Open a video file for reading; raises `VideoDecodeError` when it holds no decodable video."""
    return DECODERS.get(backend)(path)


class VideoReader:
    """The interface every backend implements: `.info`, `.read(timestamps) -> Frames`, `.close()`, context manager."""

    info: VideoInfo

    def read(self, timestamps: Sequence[float]) -> Frames:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _Decoded:
    frame: av.VideoFrame
    t: float  # seconds from stream start


@DECODERS.register("pyav")
class PyAVReader(VideoReader):
    """FFmpeg through PyAV, with threaded codec decoding."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        _check_file(self.path)
        self._keyframes: np.ndarray | None = None
        self._index_len = 0
        self._seekable = True
        self._target = -math.inf  # the request being served: lets decoding skip frames that cannot serve it
        self._seek_next = False  # the request after it will be reached by a seek: nothing past the target is needed
        self._drained = -math.inf  # the target for which the current pass stopped early, having output all up to it
        self._skipping = True
        # One converter for every frame: `frame.to_ndarray(format=...)` builds a new scaler per frame, which cost
        # more than the conversion itself. One thread: on a busy machine scaler threads only add overhead.
        self._rgb = VideoReformatter()
        self._open()
        try:
            self.info = self._probe()
        except av.FFmpegError as err:
            self._container.close()
            raise VideoDecodeError(f"{self.path}: unreadable video ({_reason(err)})") from None
        except BaseException:
            self._container.close()
            raise

    def _open(self) -> None:
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, UnicodeDecodeError) as err:
            raise VideoDecodeError(f"{self.path}: not a readable video container ({_reason(err)})") from None
        if self._container.streams.video:
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"

    def _seek(self, t: float) -> None:
        """Position the demuxer at the keyframe at or before t seconds; formats that cannot seek (raw streams)
        are reopened and read from the start."""
        try:
            self._container.seek(self._start + int(t / self._tb), stream=self._stream, backward=True)
        except av.FFmpegError:
            self._seekable = False
            self._container.close()
            self._open()

    def _probe(self) -> VideoInfo:
        c = self._container
        if not c.streams.video:
            kinds = ", ".join(sorted({s.type for s in c.streams})) or "none"
            raise VideoDecodeError(f"{self.path}: no video stream (streams: {kinds})")
        s = self._stream
        self._tb = s.time_base or Fraction(1, 1_000_000)
        self._start = s.start_time or 0
        # Read what the container declares before decoding: some demuxers estimate durations once packets are read.
        rate = s.average_rate or s.guessed_rate or s.base_rate
        declared = s.frames or None
        duration = float(s.duration * self._tb) if s.duration else (c.duration / av.time_base if c.duration else None)
        fps = float(rate) if rate else (declared / duration if declared and duration else None)
        self._step = 1.0 / (fps or 25.0)  # spacing for frames without timestamps (raw streams)
        container, codec = c.format.name.split(",")[0], s.codec_context.name  # before a reopen replaces them
        first = self._first_frame()
        self._rotation = (-first.frame.rotation) % 360  # PyAV reports the counter-clockwise angle
        self._raw_size = (first.frame.width, first.frame.height)
        width, height = self._raw_size if self._rotation in (0, 180) else self._raw_size[::-1]
        if duration is None or fps is None:
            duration, fps = self._scan_duration(fps)
        return VideoInfo(self.path, container, codec, width, height, self._rotation, fps, duration, declared)

    def _first_frame(self) -> _Decoded:
        self._check_encryption()
        try:
            first = next(self._decode_all(), None)
        except av.FFmpegError as err:
            raise VideoDecodeError(f"{self.path}: no decodable video frames ({_reason(err)})") from None
        if first is None:
            raise VideoDecodeError(f"{self.path}: no decodable video frames (the stream holds no frame)")
        return first

    def _check_encryption(self) -> None:
        # Encrypted samples decode to noise or fail deep in the codec; say what they are instead.
        packet = next((p for p in self._container.demux(self._stream) if p.size), None)
        if packet is not None and av.packet.PacketSideData.from_packet(packet, "encryption_info"):
            raise VideoDecodeError(f"{self.path}: the video stream is encrypted; decrypt it first")
        self._seek(0.0)

    def _scan_duration(self, fps: float | None) -> tuple[float, float]:
        """(duration, fps) from demuxing the whole stream (no decoding), for containers that declare no duration."""
        packets = [p.pts for p in self._container.demux(self._stream) if p.size]
        self._seek(0.0)
        times = np.sort([(pts - self._start) * float(self._tb) for pts in packets if pts is not None])
        if fps is None:
            fps = 1.0 / float(np.median(np.diff(times))) if len(times) > 1 else 25.0
        if len(times) < len(packets):  # raw streams carry no timestamps: count packets
            return len(packets) / fps, fps
        return float(times[-1]) + 1.0 / fps, fps

    def read(self, timestamps: Sequence[float]) -> Frames:
        """Frames shown at `timestamps` (seconds): (N,) -> Frames((N, 3, H, W) uint8 stored channels-last, (N,)
        float64), in request order. Decoding that fails part-way keeps what decoded and warns how many requests
        fell after it."""
        times = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        width, height = self._raw_size
        data = np.empty((len(times), height, width, 3), np.uint8)
        pts = np.empty(len(times))
        slack = 0.5 / self.info.fps
        run: Iterator[_Decoded] | None = None
        cur = nxt = served = None  # served: (the frame last written, its row); sorted targets repeat it in a row
        stopped, failure = False, None
        late = 0  # requests served by a frame well before them because decoding stopped early
        order = np.argsort(times, kind="stable")
        for k, j in enumerate(order):
            t = self._target = times[j] + slack
            after = times[order[k + 1]] + slack if k + 1 < len(order) else None
            # Decided before decoding toward t, since the decoder runs ahead of it; a promised seek is kept below.
            promised = self._seek_next
            self._seek_next = after is None or (self._seekable and self._key_between(t, after))
            position = nxt or cur
            if run is None or promised or self._should_seek(position.t if position else -math.inf, t, stopped):
                run, cur, nxt, stopped = self._decode_from(max(t - slack, 0.0)), None, None, False
            while True:
                if nxt is None:
                    try:
                        nxt = next(run, None)
                    except av.FFmpegError as err:
                        failure, nxt = _reason(err), None
                        if self._skipping:  # a skipped frame may be the last good one: decode this part again fully
                            self._skipping = False
                            run, cur = self._decode_from(max(t - slack, 0.0)), None
                            continue
                    if nxt is None and self._drained > -math.inf:
                        if self._drained >= t and cur is not None:
                            break  # the pass stopped once every frame up to this target was out: `cur` is the answer
                        if self._drained >= t:  # nothing came out: decode this part again, plainly
                            self._skipping = False
                        run, cur = self._decode_from(max(t - slack, 0.0)), None  # or it stopped for an earlier target
                        continue
                    if nxt is None:
                        stopped = True  # later targets reuse `cur` unless a seek can recover
                        break
                if cur is not None and nxt.t > t:
                    break
                cur, nxt = nxt, None
                if cur.t > t:  # target before the first frame this pass produced
                    break
            if cur is None and served is None:
                raise VideoDecodeError(f"{self.path}: no decodable video frames ({failure or 'none in the stream'})")
            if served is not None and (cur is None or cur is served[0]):
                data[j], pts[j] = data[served[1]], pts[served[1]]
            else:
                data[j] = self._rgb.reformat(cur.frame, width, height, "rgb24", threads=1).to_ndarray()
                pts[j], served = cur.t, (cur, j)
            late += bool(stopped and pts[j] + 2.0 / self.info.fps + slack < times[j] < self.info.duration)
        self._target, self._seek_next, self._skipping = -math.inf, False, True
        if late:
            why = f"decoding failed: {failure}" if failure else "the stream ended early"
            warnings.warn(f"{self.path}: {why} at {pts.max():.2f}s of {self.info.duration:.2f}s; {late} of "
                          f"{len(times)} requested frames lie after it and repeat the last decoded frame",
                          VideoDecodeWarning, stacklevel=2)
        frames = torch.from_numpy(data).permute(0, 3, 1, 2)
        if self._rotation:
            frames = torch.rot90(frames, k=-self._rotation // 90, dims=(2, 3))  # negative k turns clockwise
        return Frames(frames, torch.from_numpy(pts))

    def _should_seek(self, position: float, target: float, stopped: bool) -> bool:
        """Seek when an indexed keyframe lies in (position, target]: decoding from it skips everything before."""
        if not self._seekable:
            return False
        keys = self._keyframe_times()
        if keys is None:
            return not stopped and target - position > _SEEK_WITHOUT_INDEX_S
        return self._key_between(position, target)

    def _key_between(self, position: float, target: float) -> bool:
        """Whether an indexed keyframe lies in (position, target]."""
        keys = self._keyframe_times()
        if keys is None:
            return False
        i = np.searchsorted(keys, target, side="right") - 1
        return i >= 0 and keys[i] > position

    def _keyframe_times(self) -> np.ndarray | None:
        entries = self._stream.index_entries
        if self._keyframes is None or self._index_len != len(entries):  # Matroska loads its cues on first seek
            self._index_len = len(entries)
            ts = [e.timestamp for e in entries if e.is_keyframe]
            self._keyframes = (np.asarray(ts, np.float64) - self._start) * float(self._tb)
        return self._keyframes if len(self._keyframes) else None

    def _seconds(self, pts: int) -> float:
        # integer product, one correctly rounded division: the same float as Fraction arithmetic, much faster
        return (pts - self._start) * self._tb.numerator / self._tb.denominator

    def _decode_from(self, t: float) -> Iterator[_Decoded]:
        self._seek(t)
        return self._decode_all()

    def _decode_all(self) -> Iterator[_Decoded]:
        """Decoded frames from the current position in presentation order; frames out of order are dropped.

        Packets are demuxed a few ahead of the decoder, so that their timestamps are known before deciding. With T
        the current target `self._target`: a non-reference frame (a B-frame nothing predicts from) is not decoded
        when a packet seen shows a later frame still no later than T, since it can serve no request now or later;
        nor, when the next request will be reached by a seek (`self._seek_next`), if it is later than T. In that
        case the pass also stops once no packet left can be at or before T (one has a decode time past T): the
        decoder is drained instead of being fed frames that only a seek would throw away."""
        ctx = self._stream.codec_context
        last, first_sent = -math.inf, math.inf
        self._drained = -math.inf
        demux = self._container.demux(self._stream)
        window: deque[tuple[av.Packet, float | None, float | None]] = deque()  # demuxed, not yet decoded
        recent: deque[float] = deque(maxlen=4 * _LOOKAHEAD)  # times of packets seen around the decode position
        while True:
            for packet in demux:
                t = None if packet.pts is None else self._seconds(packet.pts)
                window.append((packet, t, None if packet.dts is None else self._seconds(packet.dts)))
                if t is not None:
                    recent.append(t)
                if len(window) >= _LOOKAHEAD:
                    break
            if not window:
                return
            target, smart = self._target, self._skipping
            if smart and self._seek_next and first_sent <= target and self._nothing_left_for(window, target):
                self._drained = target
                packets: list[av.Packet | None] = [None]  # drain: frames the decoder holds, no new packet
            else:
                packet, t, _ = window.popleft()
                skip = smart and t is not None and (
                    any(t < u <= target for u in recent) or (self._seek_next and t > target))
                ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                if t is not None and packet.size:
                    first_sent = min(first_sent, t)
                packets = [packet]
            for packet in packets:
                for frame in self._stream.decode(packet):
                    pts = frame.pts if frame.pts is not None else frame.dts
                    t = max(last + self._step, 0.0) if pts is None else self._seconds(pts)
                    if t > last:
                        last = t
                        yield _Decoded(frame, t)
            if self._drained > -math.inf:
                return

    @staticmethod
    def _nothing_left_for(window, target: float) -> bool:
        """Whether no packet from the window on can hold a frame at or before `target`: a packet whose decode time
        is past it comes before any with a presentation time at or before it (decode times rise, pts >= dts)."""
        for packet, t, dts in window:
            if t is None or t <= target or not packet.size:
                return False
            if dts is not None and dts > target:
                return True
        return False

    def count_decodable(self) -> tuple[int, str | None]:
        """Decode every frame: (how many decode, the error that stopped decoding or None)."""
        self._seek(0.0)
        count = 0
        try:
            for _ in self._decode_all():
                count += 1
        except av.FFmpegError as err:
            return count, _reason(err)
        return count, None

    def close(self) -> None:
        self._container.close()


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoDecodeError(f"{path}: is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")


def _reason(err: Exception) -> str:
    """FFmpeg's message without the errno and call-site decoration."""
    return getattr(err, "strerror", None) or str(err)


__all__ = ["DECODERS", "Frames", "VideoDecodeError", "VideoDecodeWarning", "VideoInfo", "VideoReader", "open_video"]
