"""The PyAV pass decoder: one open container of a video file and its decoder, which probes the stream and runs the
passes of a read plan (`plan.Pass`).

A pass positions the demuxer (a seek, or the first packet of the file) and decodes in presentation order until
every target's frame is known. Packets are demuxed a few ahead of the decoder: non-reference frames (B-frames) that
cannot be the answer are not decoded at all, and after the pass's last target the decoder is drained as soon as
every frame up to it is out. A seek that lands after its target (MPEG-TS, MPEG-PS and FLV seek by timestamp, not to
a keyframe) is detected by the first decoded frame and retried further back, then from the start of the file. A
packet that fails to decode is recorded and decoding goes on, so files that recover after a damaged stretch keep
returning their later frames.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from liteframe.video.info import VideoDecodeError, VideoInfo
from liteframe.video.plan import Pass, nothing_left_for, useless

# Packets demuxed ahead of the decoder: enough to see past H.264/HEVC reordering (up to 3-4 B-frames in a row).
_LOOKAHEAD = 6
# When a seek lands after its target, seek again this much further back (seconds), then decode from the start.
_SEEK_BACK_S = (2.0, 8.0, 32.0)
# Containers whose declared duration is an estimate that can fall short (MPEG-PS, raw elementary streams): the
# duration is scanned from their packets instead.
_SCAN_DURATION = {"mpeg", "h264", "hevc", "mpegvideo", "m4v"}
# Containers read from the start, never by seeking: after a seek, FFmpeg's MPEG-PS demuxer gives the same frames other
# timestamps than a linear read does (off by several frames).
_NO_SEEK = {"mpeg"}


@dataclass
class Decoded:
    frame: av.VideoFrame
    t: float  # seconds from stream start


@dataclass
class Failure:
    reason: str
    t: float  # seconds: the time of the packet that failed to decode (or of the last frame before it)


@dataclass
class PassResult:
    """`answers`: per target, the last decoded frame at or before it (None: the first frame came after it).
    `first`: the first frame the pass decoded; `ended`: the pass reached the end of the stream."""

    answers: list[Decoded | None]
    first: Decoded | None
    ended: bool
    failure: Failure | None


class PassDecoder:
    """A video file's first video stream on a container of its own. `threads`: the codec's threads (0: FFmpeg's
    choice, frame threads on every core, for a read of one pass or a linear read; 1 for the threads of a read).
    `probe()` fills in the stream's timing; `sibling()` opens another container on the same stream for another
    thread, sharing what the probe found but not the demuxer or decoder."""

    def __init__(self, path: str, threads: int = 0):
        self.path, self.threads = path, threads
        self.seekable = True
        self._keyframes: np.ndarray | None = None
        self._index_len = 0
        self.open()

    def open(self) -> None:
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, UnicodeDecodeError) as err:
            raise VideoDecodeError(f"{self.path}: not a readable video container ({reason(err)})") from None
        if self._container.streams.video:
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._stream.codec_context.thread_count = self.threads
        self._fresh = True  # nothing read since the open

    def sibling(self) -> "PassDecoder":
        """Another container on the same stream, with a one-thread decoder: the read's threads keep the cores busy,
        and a frame-threaded decoder restarts its pipeline at every seek (no faster: docs/results/decode.md)."""
        other = copy.copy(self)
        other.threads = 1
        other.open()
        return other

    def close(self) -> None:
        self._container.close()

    def probe(self) -> VideoInfo:
        """What the stream declares, and its first frame's time, rotation and stored size (`first_t`, `rotation`,
        `raw_size`); raises VideoDecodeError (closing the container) when it holds no decodable video."""
        try:
            return self._probe()
        except av.FFmpegError as err:
            self.close()
            raise VideoDecodeError(f"{self.path}: unreadable video ({reason(err)})") from None
        except BaseException:
            self.close()
            raise

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
        self.first_t = first.t
        self.rotation = (-first.frame.rotation) % 360  # PyAV reports the counter-clockwise angle
        self.raw_size = (first.frame.width, first.frame.height)
        width, height = self.raw_size if self.rotation in (0, 180) else self.raw_size[::-1]
        if duration is None or fps is None or container in _SCAN_DURATION:
            duration, fps = self._scan_duration(fps)
        self.seekable = self.seekable and container not in _NO_SEEK
        if self.seekable:
            self.seek(0.0)  # Matroska loads its keyframe index (cues) on the first seek: plans can use it at once
        return VideoInfo(self.path, container, codec, width, height, self.rotation, fps, duration, declared)

    def _first_frame(self) -> Decoded:
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
                failure = reason(err)
                continue
            if frames:
                pts = frames[0].pts if frames[0].pts is not None else frames[0].dts
                return Decoded(frames[0], 0.0 if pts is None else self.seconds(pts))
        raise VideoDecodeError(f"{self.path}: no decodable video frames ({failure})")

    def _scan_duration(self, fps: float | None) -> tuple[float, float]:
        """(duration, fps) from demuxing the whole stream from its first packet (no decoding)."""
        self.rewind()
        self._fresh = False
        packets = [p.pts for p in self._container.demux(self._stream) if p.size]
        times = np.sort([(pts - self._start) * float(self._tb) for pts in packets if pts is not None])
        if fps is None:
            fps = 1.0 / float(np.median(np.diff(times))) if len(times) > 1 else 25.0
        if len(times) < len(packets):  # raw streams carry no timestamps: count packets
            return len(packets) / fps, fps
        return float(times[-1]) + 1.0 / fps, fps

    def rewind(self) -> None:
        """Back to the first packet of the file: a fresh open, since some demuxers cannot seek there exactly."""
        if not self._fresh:
            self.close()
            self.open()

    def seek(self, t: float) -> None:
        """Position the demuxer at (or, for timestamp-seeking containers, near) the keyframe at or before t seconds;
        formats that cannot seek (raw streams) are reopened and read from the start, and never seek again."""
        self._fresh = False
        try:
            self._container.seek(self._start + int(t / self._tb), stream=self._stream, backward=True)
        except av.FFmpegError:
            self.seekable = False
            self.rewind()

    def seconds(self, pts: int) -> float:
        # integer product, one correctly rounded division: the same float as Fraction arithmetic, much faster
        return (pts - self._start) * self._tb.numerator / self._tb.denominator

    def keyframe_times(self) -> np.ndarray | None:
        """Sorted times (seconds) of the indexed keyframes; None without an index."""
        entries = self._stream.index_entries
        if self._keyframes is None or self._index_len != len(entries):  # Matroska loads its cues on first seek
            self._index_len = len(entries)
            ts = [e.timestamp for e in entries if e.is_keyframe]
            self._keyframes = (np.asarray(ts, np.float64) - self._start) * float(self._tb)
        return self._keyframes if len(self._keyframes) else None

    def serve(self, plan: Pass) -> PassResult:
        """Run a pass; run it again without skipping if a packet failed (a skipped frame may be the last good one),
        and from further back, then from the start, while its first frame comes after its first target. Targets
        before the first frame of the video get the first frame."""
        result = self.decode_pass(plan)
        if result.failure and plan.skip:
            plan = dataclasses.replace(plan, skip=False)
            result = self.decode_pass(plan)
        starts = [] if plan.start is None else [plan.start - back for back in _SEEK_BACK_S if plan.start > back]
        for start in [*starts, None]:
            if result.answers[0] is not None or (result.first and result.first.t <= self.first_t):
                break
            result = self.decode_pass(dataclasses.replace(plan, start=start))
        if result.first is None:
            why = result.failure.reason if result.failure else "none in the stream"
            raise VideoDecodeError(f"{self.path}: no decodable video frames ({why})")
        result.answers = [a or result.first for a in result.answers]
        return result

    def decode_pass(self, plan: Pass) -> PassResult:
        """Position the demuxer, then decode in presentation order until every target's frame is known (frames out
        of order are dropped). A non-reference frame is not decoded when it can answer no target (`useless`). Once
        no packet left can be at or before the last target (one has a decode time past it), the decoder is drained
        instead of being fed frames that the next pass's seek would throw away."""
        if plan.start is None:
            self.rewind()
        else:
            self.seek(plan.start)
        self._fresh = False
        targets, n = plan.targets, len(plan.targets)
        answers: list[Decoded | None] = [None] * n
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
                    t = None if packet.pts is None else self.seconds(packet.pts)
                    window.append((packet, t, None if packet.dts is None else self.seconds(packet.dts)))
                    if t is not None:
                        recent.append(t)
                    if len(window) >= _LOOKAHEAD:
                        break
            except av.FFmpegError as err:
                failure = failure or Failure(reason(err), last)
            if not window:
                ended = True
                packet, t = None, None  # flush the frames the decoder still holds
            elif (plan.skip and k == n - 1 and first_sent <= targets[k]
                  and nothing_left_for(((t, dts, p.size) for p, t, dts in window), targets[k])):
                packet, t = None, None  # drain: every frame up to the last target is in the decoder
            else:
                packet, t, _ = window.popleft()
                ctx.skip_frame = "NONREF" if plan.skip and t is not None and useless(t, targets, recent) else "DEFAULT"
                if t is not None and packet.size:
                    first_sent = min(first_sent, t)
                    sent.append(t)
            try:
                frames = self._stream.decode(packet)
            except av.FFmpegError as err:
                frames = []
                if packet is not None:  # an error while flushing is the decoder's end-of-stream, not damage
                    failure = failure or Failure(reason(err), last if t is None else t)
            for frame in frames:
                if first is None and plan.start is not None and not frame.key_frame:
                    continue  # after a seek that missed a keyframe, frames before the next one may be garbage
                pts = frame.pts if frame.pts is not None else frame.dts
                t = max(last + self._step, 0.0) if pts is None else self.seconds(pts)
                if t <= last:
                    continue
                last, decoded = t, Decoded(frame, t)
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
        return PassResult(answers, first, ended, failure)

    def count_decodable(self) -> tuple[int, str | None]:
        """Decode every frame from the first packet of the file, past damaged stretches: (how many decode, the
        first error or None)."""
        self.rewind()
        self._fresh = False
        count, failure = 0, None
        for packet in self._container.demux(self._stream):
            try:
                count += len(self._stream.decode(packet))
            except av.FFmpegError as err:
                failure = failure or reason(err)
        return count, failure


def reason(err: Exception) -> str:
    """FFmpeg's message without the errno and call-site decoration."""
    return getattr(err, "strerror", None) or str(err)


__all__ = ["Decoded", "Failure", "PassDecoder", "PassResult", "reason"]
