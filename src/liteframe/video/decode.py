"""Video decoding: open a file, read the frames shown at given times, and nothing more.

`open_video(path)` returns a `VideoReader` whose `.info` describes the stream and whose `.read(timestamps)` returns
one RGB frame per requested time. Timestamps are seconds from the start of the video stream. The frame returned for
time t is the last frame whose presentation time is <= t + half a frame interval: the frame on screen at t, with
enough slack that times computed as index / fps hit their own frame despite the container's rounding. A time before
the first frame gets the first frame; no other request ever gets a frame from after its time.

Each `read` first builds a plan (`_plan`): the sorted targets cut into passes, a pass starting with a seek wherever an
indexed keyframe lies between two consecutive targets (decoding from it skips everything before), so nearby targets
share one pass. `_decode_pass` then runs one pass top to bottom. Packets are demuxed a few ahead of the decoder:
non-reference frames (B-frames) that cannot be the answer are not decoded at all, and after the pass's last target the
decoder is drained as soon as every frame up to it is out. A seek that lands after its target (MPEG-TS, MPEG-PS and
FLV seek by timestamp, not to a keyframe) is detected by the first decoded frame and retried further back, then from
the start of the file. A packet that fails to decode is recorded and decoding goes on, so files that recover after a
damaged stretch keep returning their later frames. Only returned frames are converted to RGB, by one converter
reused for the whole read. The passes of a plan run on as many threads as torch's intra-op threads (at most
`_MAX_THREADS`), each thread taking the next pass as it frees up, on a container and decoder of its own, and writing
the converted (and resized) frames straight into the shared output: passes are independent, and a pass that starts
at a keyframe is a chain of dependent frames that a frame-threaded decoder cannot spread over the cores.
Backends are registered in `DECODERS` so that another library (torchcodec, decord) can be added without touching
callers.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import queue
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.video.reformatter import Interpolation, VideoReformatter

from liteframe.errors import InputError
from liteframe.registry import Registry
from liteframe.video.preprocess import pad_square

DECODERS: Registry[type] = Registry("video decoder")

# Without a keyframe index, targets this far apart are reached by seeking.
_SEEK_WITHOUT_INDEX_S = 2.0
# Packets demuxed ahead of the decoder: enough to see past H.264/HEVC reordering (up to 3-4 B-frames in a row).
_LOOKAHEAD = 6
# When a seek lands after its target, seek again this much further back (seconds), then decode from the start.
_SEEK_BACK_S = (2.0, 8.0, 32.0)
# Containers whose declared duration is an estimate that can fall short (MPEG-PS, raw elementary streams): the
# duration is scanned from their packets instead.
_SCAN_DURATION = {"mpeg", "h264", "hevc", "mpegvideo", "m4v"}
# A read of several passes runs them on as many threads as torch's intra-op threads (1 in a DataLoader worker), at
# most this many, each on its own container: passes are independent (each starts at a keyframe), and a seek-bound
# pass keeps a frame-threaded decoder busy on one core at best (docs/results/decode.md).
_MAX_THREADS = 8
# Resizing in the decoder (`SCALERS`, measured against PIL bicubic of the RGB frame in docs/results/frontend.md):
# - "exact": swscale converts to RGB at the stored size (the conversion the reference resizes), then torch's uint8
#   antialiased bicubic, which is PIL's kernel with PIL's fixed-point rounding between its two passes: within 2
#   levels of the reference. No float frame is made.
# - "swscale": one swscale call, bicubic with full chroma interpolation, from YUV straight to planar RGB (gbrp) at
#   the output size (channels-first with no transpose); resizing before the colour conversion and swscale's
#   B=0, C=0.6 kernel put it about a level off the reference on average (tens of levels at saturated edges).
SCALERS = ("exact", "swscale")
_SCALE = (Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
          | Interpolation.FULL_CHR_H_INP)
_GBRP_TO_RGB = (1, 2, 0)  # the channel each gbrp plane (G, B, R) goes to
# Containers read from the start, never by seeking: after a seek, FFmpeg's MPEG-PS demuxer gives the same frames other
# timestamps than a linear read does (off by several frames).
_NO_SEEK = {"mpeg"}


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

    def read(self, timestamps: Sequence[float], size: int | None = None, keep_aspect: bool = False,
             scaler: str = "exact") -> Frames:
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


@dataclass(frozen=True)
class _Pass:
    """One decoding pass over sorted targets (seconds, slack included). `start`: seek to the keyframe at or before
    this time, or None to decode from the first packet of the file. `skip`: leave out non-reference frames that
    cannot be an answer."""

    targets: np.ndarray
    start: float | None
    skip: bool = True


@dataclass
class _Failure:
    reason: str
    t: float  # seconds: the time of the packet that failed to decode (or of the last frame before it)


@dataclass
class _PassResult:
    """`answers`: per target, the last decoded frame at or before it (None: the first frame came after it).
    `first`: the first frame the pass decoded; `ended`: the pass reached the end of the stream."""

    answers: list[_Decoded | None]
    first: _Decoded | None
    ended: bool
    failure: _Failure | None


@DECODERS.register("pyav")
class PyAVReader(VideoReader):
    """FFmpeg through PyAV, with threaded codec decoding."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        _check_file(self.path)
        self._keyframes: np.ndarray | None = None
        self._index_len = 0
        self._seekable = True
        # One converter for every frame: `frame.to_ndarray(format=...)` builds a new scaler per frame, which cost
        # more than the conversion itself. One thread: on a busy machine scaler threads only add overhead.
        self._rgb = VideoReformatter()
        self._scale = VideoReformatter()  # a second converter: each keeps its swscale context between frames
        self._decoder_threads = 0  # FFmpeg's choice, frame threads: for one pass, or a linear read, on every core
        self._others: list[PyAVReader] = []  # siblings for the threads of a read (`_siblings`)
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
            self._stream.codec_context.thread_count = self._decoder_threads
        self._fresh = True  # nothing read since the open

    def _rewind(self) -> None:
        """Back to the first packet of the file: a fresh open, since some demuxers cannot seek there exactly."""
        if not self._fresh:
            self._container.close()
            self._open()

    def _seek(self, t: float) -> None:
        """Position the demuxer at (or, for timestamp-seeking containers, near) the keyframe at or before t seconds;
        formats that cannot seek (raw streams) are reopened and read from the start."""
        self._fresh = False
        try:
            self._container.seek(self._start + int(t / self._tb), stream=self._stream, backward=True)
        except av.FFmpegError:
            self._seekable = False
            self._rewind()

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
        self._first_t = first.t
        self._rotation = (-first.frame.rotation) % 360  # PyAV reports the counter-clockwise angle
        self._raw_size = (first.frame.width, first.frame.height)
        width, height = self._raw_size if self._rotation in (0, 180) else self._raw_size[::-1]
        if duration is None or fps is None or container in _SCAN_DURATION:
            duration, fps = self._scan_duration(fps)
        self._seekable = self._seekable and container not in _NO_SEEK
        if self._seekable:
            self._seek(0.0)  # Matroska loads its keyframe index (cues) on the first seek: plans can use it at once
        return VideoInfo(self.path, container, codec, width, height, self._rotation, fps, duration, declared)

    def _first_frame(self) -> _Decoded:
        """The first frame of the stream, decoded from the first packet of the file (the file as opened: no second
        open). Encrypted samples decode to noise or fail deep in the codec: the first packet says what they are."""
        self._fresh, checked, failure = False, False, "the stream holds no frame"
        for packet in self._container.demux(self._stream):
            if packet.size and not checked:
                checked = True
                if av.packet.PacketSideData.from_packet(packet, "encryption_info"):
                    raise VideoDecodeError(f"{self.path}: the video stream is encrypted; decrypt it first")
            try:
                frames = self._stream.decode(packet)
            except av.FFmpegError as err:
                failure = _reason(err)
                continue
            if frames:
                pts = frames[0].pts if frames[0].pts is not None else frames[0].dts
                return _Decoded(frames[0], 0.0 if pts is None else self._seconds(pts))
        raise VideoDecodeError(f"{self.path}: no decodable video frames ({failure})")

    def _scan_duration(self, fps: float | None) -> tuple[float, float]:
        """(duration, fps) from demuxing the whole stream from its first packet (no decoding)."""
        self._rewind()
        self._fresh = False
        packets = [p.pts for p in self._container.demux(self._stream) if p.size]
        times = np.sort([(pts - self._start) * float(self._tb) for pts in packets if pts is not None])
        if fps is None:
            fps = 1.0 / float(np.median(np.diff(times))) if len(times) > 1 else 25.0
        if len(times) < len(packets):  # raw streams carry no timestamps: count packets
            return len(packets) / fps, fps
        return float(times[-1]) + 1.0 / fps, fps

    def read(self, timestamps: Sequence[float], size: int | None = None, keep_aspect: bool = False,
             scaler: str = "exact") -> Frames:
        """Frames shown at `timestamps` (seconds): (N,) -> Frames((N, 3, H, W) uint8, (N,) float64), in request
        order; full-size frames are stored channels-last. With `size`, each frame is resized to size x size RGB
        as it is decoded, by `scaler` (`SCALERS`), and stored channels-first (`keep_aspect`: fitted inside and
        padded with `PAD_VALUE`).
        Frames that do not decode are replaced by the last frame decoded before them, with a warning that says where
        decoding failed and how many requests it touched."""
        if scaler not in SCALERS:
            raise ValueError(f"unknown scaler {scaler!r}; choose from {', '.join(SCALERS)}")
        times = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        width, height = self._raw_size if size is None else self._scaled_size(size, keep_aspect)
        # full frames are converted packed (channels-last), resized ones planar (channels-first)
        data = np.empty((len(times), height, width, 3) if size is None else (len(times), 3, height, width), np.uint8)
        pts = np.empty(len(times))
        slack = 0.5 / self.info.fps
        order = np.argsort(times, kind="stable")
        plans = self._plan(times[order] + slack)
        rows = np.split(order, np.cumsum([len(plan.targets) for plan in plans])[:-1]) if plans else []
        threads = min(_MAX_THREADS, torch.get_num_threads(), len(plans))
        convert = None if size is None else scaler  # None: full-size RGB
        with _one_torch_thread():  # before any thread of the read starts: see _one_torch_thread
            if threads <= 1:
                failures = [self._serve_all(iter(zip(plans, rows)), data, pts, convert)]
            else:  # passes are handed out in order as threads free up: a thread slowed down takes fewer
                work: queue.SimpleQueue = queue.SimpleQueue()
                for item in zip(plans, rows):
                    work.put(item)
                with ThreadPoolExecutor(threads, thread_name_prefix="liteframe-read") as pool:
                    jobs = [pool.submit(reader._serve_all, _drain(work), data, pts, convert)
                            for reader in self._siblings(threads)]
                    failures = [job.result() for job in jobs]
        failure = min((f for f in failures if f), key=lambda f: f.t, default=None)
        # requests served by a frame well before them: the stream ended early or a stretch did not decode
        late = int(np.sum((pts + 2.0 / self.info.fps + slack < times) & (times < self.info.duration)))
        where = f"of {self.info.duration:.2f}s"
        if failure:
            warnings.warn(f"{self.path}: decoding failed at {failure.t:.2f}s {where} ({failure.reason}); {late} of "
                          f"{len(times)} requested frames lie where nothing decoded and repeat the last frame decoded "
                          f"before them", VideoDecodeWarning, stacklevel=2)
        elif late:
            warnings.warn(f"{self.path}: the stream ended early at {pts.max():.2f}s {where}; {late} of {len(times)} "
                          f"requested frames lie after it and repeat the last decoded frame", VideoDecodeWarning,
                          stacklevel=2)
        frames = torch.from_numpy(data)
        frames = frames.permute(0, 3, 1, 2) if size is None else frames
        if self._rotation:
            frames = torch.rot90(frames, k=-self._rotation // 90, dims=(2, 3))  # negative k turns clockwise
        if size is not None and frames.shape[-2:] != (size, size):
            frames = pad_square(frames)
        return Frames(frames, torch.from_numpy(pts))

    def _serve_all(self, work, data: np.ndarray, pts: np.ndarray, scaler: str | None) -> _Failure | None:
        """Run the passes of `work`, (pass, rows) pairs in file order, on this reader's container, writing the answer
        to the pass's target i into `data[rows[i]]` (converted by `scaler`, None: full-size RGB) and `pts[rows[i]]`
        -> the first failure."""
        end: _Decoded | None = None  # the stream's last frame, once a pass has reached it
        failure: _Failure | None = None
        served = None  # (the frame last written, its row): sorted targets repeat it in a row
        with _one_torch_thread():
            for plan, rows in work:
                if end is not None and plan.targets[0] >= end.t:
                    answers = [end] * len(plan.targets)  # nothing lies past the end of the stream: no need to seek
                else:
                    result = self._serve(plan)
                    answers, failure = result.answers, failure or result.failure
                    end = result.answers[-1] if result.ended else end
                for answer, j in zip(answers, rows):
                    if served is not None and answer is served[0]:
                        data[j], pts[j] = data[served[1]], pts[served[1]]
                        continue
                    self._convert(answer.frame, data[j], scaler)
                    pts[j], served = answer.t, (answer, j)
        return failure

    def _siblings(self, n: int) -> list["PyAVReader"]:
        """n readers of the same stream for the threads of a read, each on a container of its own (kept open
        for the next read): they share what the probe found, not the demuxer, decoder or converters. Their decoders
        run on the calling thread alone: the read's threads keep the cores busy, and a frame-threaded decoder
        restarts its pipeline at every seek (measured no faster, in docs/results/decode.md)."""
        while len(self._others) < n:
            other = copy.copy(self)
            other._others, other._decoder_threads = [], 1
            other._rgb, other._scale = VideoReformatter(), VideoReformatter()
            other._open()
            self._others.append(other)
        return self._others[:n]

    def _scaled_size(self, size: int, keep_aspect: bool) -> tuple[int, int]:
        """The stored (unrotated) (width, height) that a frame is resized to for a size x size output."""
        if not keep_aspect:
            return size, size
        w, h = self._raw_size
        scale = size / max(w, h)
        return max(1, round(w * scale)), max(1, round(h * scale))

    def _convert(self, frame: av.VideoFrame, out: np.ndarray, scaler: str | None) -> None:
        """A decoded frame -> RGB into `out`: uint8 (height, width, 3) at the stored size, or with a `scaler`
        (3, height, width) resized by it."""
        if scaler is None:
            out[:] = self._rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()
            return
        height, width = out.shape[1:]
        if scaler == "exact":
            rgb = torch.from_numpy(self._rgb.reformat(frame, format="rgb24", threads=1).to_ndarray())
            # channels-last uint8 is the layout torch's vectorised antialiased resize is written for
            small = F.interpolate(rgb.permute(2, 0, 1)[None], size=(height, width), mode="bicubic", antialias=True)
            torch.from_numpy(out).copy_(small[0])
            return
        planar = self._scale.reformat(frame, width, height, "gbrp", interpolation=_SCALE, threads=1)
        for channel, plane in zip(_GBRP_TO_RGB, planar.planes):
            out[channel] = np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)[:, :width]

    def _plan(self, targets: np.ndarray) -> list[_Pass]:
        """Sorted targets (N,) seconds -> the passes that serve them, in order: a new pass, starting with a seek,
        wherever an indexed keyframe lies between two consecutive targets, or, without an index, where they are
        more than `_SEEK_WITHOUT_INDEX_S` apart. A stream that cannot seek is read in one pass from its start."""
        if len(targets) == 0:
            return []
        if not self._seekable:
            return [_Pass(targets, None)]
        keys = self._keyframe_times()
        if keys is None:
            cut = np.diff(targets) > _SEEK_WITHOUT_INDEX_S
        else:
            cut = np.diff(np.searchsorted(keys, targets, side="right")) > 0
        slack = 0.5 / self.info.fps
        return [_Pass(part, max(part[0] - slack, 0.0)) for part in np.split(targets, np.flatnonzero(cut) + 1)]

    def _serve(self, plan: _Pass) -> _PassResult:
        """Run a pass; run it again without skipping if a packet failed (a skipped frame may be the last good one),
        and from further back, then from the start, while its first frame comes after its first target."""
        result = self._decode_pass(plan)
        if result.failure and plan.skip:
            plan = dataclasses.replace(plan, skip=False)
            result = self._decode_pass(plan)
        starts = [] if plan.start is None else [plan.start - back for back in _SEEK_BACK_S if plan.start > back]
        for start in [*starts, None]:
            if result.answers[0] is not None or (result.first and result.first.t <= self._first_t):
                break
            result = self._decode_pass(dataclasses.replace(plan, start=start))
        if result.first is None:
            why = result.failure.reason if result.failure else "none in the stream"
            raise VideoDecodeError(f"{self.path}: no decodable video frames ({why})")
        # before the first frame of the video: the first frame
        result.answers = [a or result.first for a in result.answers]
        return result

    def _decode_pass(self, plan: _Pass) -> _PassResult:
        """Position the demuxer, then decode in presentation order until every target's frame is known (frames out
        of order are dropped). A non-reference frame is not decoded when it can answer no target (`_useless`). Once
        no packet left can be at or before the last target (one has a decode time past it), the decoder is drained
        instead of being fed frames that the next pass's seek would throw away."""
        if plan.start is None:
            self._rewind()
        else:
            self._seek(plan.start)
        self._fresh = False
        targets, n = plan.targets, len(plan.targets)
        answers: list[_Decoded | None] = [None] * n
        k, cur, first, last = 0, None, None, -math.inf
        failure, ended, first_sent = None, False, math.inf
        sent, out = [], set()  # times of the packets sent and of the frames out: where a failure really lies
        ctx = self._stream.codec_context
        demux = self._container.demux(self._stream)
        window: deque[tuple[av.Packet, float | None, float | None]] = deque()  # demuxed, not yet decoded
        recent: deque[float] = deque(maxlen=4 * _LOOKAHEAD)  # times of packets seen around the decode position
        while k < n:
            try:
                for packet in demux:
                    t = None if packet.pts is None else self._seconds(packet.pts)
                    window.append((packet, t, None if packet.dts is None else self._seconds(packet.dts)))
                    if t is not None:
                        recent.append(t)
                    if len(window) >= _LOOKAHEAD:
                        break
            except av.FFmpegError as err:
                failure = failure or _Failure(_reason(err), last)
            if not window:
                ended = True
                packet, t = None, None  # flush the frames the decoder still holds
            elif plan.skip and k == n - 1 and first_sent <= targets[k] and _nothing_left_for(window, targets[k]):
                packet, t = None, None  # drain: every frame up to the last target is in the decoder
            else:
                packet, t, _ = window.popleft()
                ctx.skip_frame = "NONREF" if plan.skip and t is not None and _useless(t, targets, recent) else "DEFAULT"
                if t is not None and packet.size:
                    first_sent = min(first_sent, t)
                    sent.append(t)
            try:
                frames = self._stream.decode(packet)
            except av.FFmpegError as err:
                frames = []
                if packet is not None:  # an error while flushing is the decoder's end-of-stream, not damage
                    failure = failure or _Failure(_reason(err), last if t is None else t)
            for frame in frames:
                if first is None and plan.start is not None and not frame.key_frame:
                    continue  # after a seek that missed a keyframe, frames before the next one may be garbage
                pts = frame.pts if frame.pts is not None else frame.dts
                t = max(last + self._step, 0.0) if pts is None else self._seconds(pts)
                if t <= last:
                    continue
                last, decoded = t, _Decoded(frame, t)
                out.add(t)
                first = first or decoded
                while k < n and t > targets[k]:
                    answers[k], k = cur, k + 1
                cur = decoded
            if packet is None:
                break
        answers[k:] = [cur] * (n - k)
        if failure:  # threaded decoders report an error a few packets late: the first frame that never came out
            failure.t = min((u for u in sent if u < last and u not in out), default=failure.t)
        return _PassResult(answers, first, ended, failure)

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

    def count_decodable(self) -> tuple[int, str | None]:
        """Decode every frame from the first packet of the file, past damaged stretches: (how many decode, the
        first error or None)."""
        self._rewind()
        self._fresh = False
        count, failure = 0, None
        for packet in self._container.demux(self._stream):
            try:
                count += len(self._stream.decode(packet))
            except av.FFmpegError as err:
                failure = failure or _reason(err)
        return count, failure

    def close(self) -> None:
        for reader in [*self._others, self]:
            reader._container.close()


@contextmanager
def _one_torch_thread():
    """torch on one thread in this thread while frames are resized: a 448 px uint8 resize takes 1.5 ms on one
    thread and 4-5x longer on two on a busy machine, whose cores the decoder's own threads (and, beside a stream,
    the encoder) keep busy anyway. With OpenMP, torch's thread count is per calling thread, so a stream's decoding
    thread leaves the caller's encoder its threads. A read sets it before starting its own threads and each of them
    sets it again: whatever order they finish in, the count a new thread inherits is the caller's again at the end."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _drain(work: queue.SimpleQueue):
    """The items of a queue filled beforehand, until it is empty: threads share it, each taking the next item."""
    while True:
        try:
            yield work.get_nowait()
        except queue.Empty:
            return


def _useless(t: float, targets: np.ndarray, recent: deque) -> bool:
    """Whether a frame at t can answer no target of the pass: it lies past the last one, or a packet seen holds a
    later frame still at or before the first target at or after t. Decided per packet, not from the target being
    served: a threaded decoder outputs frames several packets after they are sent."""
    j = np.searchsorted(targets, t)
    return j == len(targets) or any(t < u <= targets[j] for u in recent)


def _nothing_left_for(window, target: float) -> bool:
    """Whether no packet from the window on can hold a frame at or before `target`: a packet whose decode time is
    past it comes before any with a presentation time at or before it (decode times rise, pts >= dts)."""
    for packet, t, dts in window:
        if t is None or t <= target or not packet.size:
            return False
        if dts is not None and dts > target:
            return True
    return False


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


__all__ = ["DECODERS", "SCALERS", "Frames", "VideoDecodeError", "VideoDecodeWarning", "VideoInfo", "VideoReader",
           "open_video"]
