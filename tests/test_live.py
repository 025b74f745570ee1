"""Live sources (video/live.py): a FIFO fed by a PyAV encoder thread, stdin, a growing file, a broken network
stream and a caller that falls behind, each against a linear decode of the same bytes."""
from __future__ import annotations

import io
import os
import socket
import struct
import sys
import threading
import time

import av
import numpy as np
import pytest
import torch

from liteframe.video import VideoDecodeError, VideoDecodeWarning, open_video
from liteframe.video.live import open_live
from liteframe.testing.videos import frame_image

FPS, W, H = 8, 64, 48


def encode_ts(num_frames: int, out) -> None:
    """MPEG-TS of frames that code their index (tests/videos.py), written to the file object `out` as it is muxed."""
    with av.open(out, "w", format="mpegts") as mux:
        stream = mux.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "crf": "18", "bf": "2", "g": "8"}
        for i in range(num_frames):
            mux.mux(stream.encode(av.VideoFrame.from_ndarray(frame_image(i, W, H), format="rgb24")))
        mux.mux(stream.encode())


def ts_bytes(num_frames: int) -> bytes:
    out = io.BytesIO()
    encode_ts(num_frames, out)
    return out.getvalue()


def linear(data: bytes) -> list[tuple[float, np.ndarray]]:
    """Every frame of the stream, (seconds from its start, RGB (H, W, 3)), decoded front to back."""
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        return [(float((f.pts - s.start_time) * s.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(s)]


def expected(ref, rate: float) -> list[tuple[float, np.ndarray]]:
    """The documented rule: target k at t0 + k / rate gets the last frame at or before it plus half a frame; the
    targets run while a frame is on screen (the last one for one frame interval)."""
    times = np.array([t for t, _ in ref])
    slack, out, k = 0.5 / FPS, [], 0
    while times[0] + k / rate + slack < times[-1] + 1 / FPS:
        out.append(ref[int(np.searchsorted(times, times[0] + k / rate + slack, side="right")) - 1])
        k += 1
    return out


def check(chunks, want) -> None:
    pts = torch.cat([c.pts for c in chunks]).numpy()
    frames = torch.cat([c.data for c in chunks])
    assert frames.dtype == torch.uint8 and frames.shape[1:] == (3, H, W)
    np.testing.assert_array_equal(pts, [t for t, _ in want])
    for got, (_, rgb) in zip(frames, want):
        assert np.array_equal(got.permute(1, 2, 0).numpy(), rgb)


class Tee(io.RawIOBase):
    """What the muxer writes, to a pipe and to a file (the copy the reference decodes)."""

    def __init__(self, *outs):
        self.outs = outs

    def writable(self):
        return True

    def write(self, b):
        for out in self.outs:
            out.write(b)
            out.flush()
        return len(b)


@pytest.mark.parametrize("rate", [3.0, 10.0])  # fewer samples than frames, and more (frames repeat)
def test_a_fifo_fed_by_an_encoder_thread_gives_the_linear_decode_at_the_sampled_times(tmp_path, rate):
    fifo, copy = tmp_path / "live.ts", tmp_path / "copy.ts"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "wb") as pipe, open(copy, "wb") as f:
            encode_ts(60, Tee(pipe, f))

    writer = threading.Thread(target=write)
    writer.start()
    with open_live(fifo, rate, chunk_frames=4) as live:
        chunks = list(live)
    writer.join()
    assert all(len(c.pts) == 4 for c in chunks[:-1]) and live.dropped == 0
    assert live.end_reason == "the writer closed the pipe" and live.fps == FPS
    want = expected(linear(copy.read_bytes()), rate)
    check(chunks, want)
    with open_video(copy) as reader:  # `ask` reading the finished file at these times sees the same frames
        times = torch.cat([c.pts for c in chunks])
        assert torch.equal(reader.read(times.numpy()).data, torch.cat([c.data for c in chunks]))


def test_stdin(monkeypatch):
    data = ts_bytes(24)
    read, write = os.pipe()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(os.fdopen(read, "rb")))
    writer = threading.Thread(target=lambda: (os.write(write, data), os.close(write)))
    writer.start()
    live = open_live("-", 4.0, chunk_frames=3)
    chunks = list(live)
    writer.join()
    check(chunks, expected(linear(data), 4.0))
    assert live.end_reason == "the writer closed the pipe"


def _leases_work(tmp_path) -> bool:
    from liteframe.video.live import _writers_gone

    path = tmp_path / "lease"
    with open(path, "wb"):
        fd = os.open(path, os.O_RDONLY)
        held = _writers_gone(fd)
    gone = _writers_gone(fd)
    os.close(fd)
    return gone and not held


def test_a_growing_file_is_read_until_its_writer_closes_it(tmp_path):
    if not _leases_work(tmp_path):
        pytest.skip("no file leases on this filesystem: a growing file ends by idle_s alone")
    data, path = ts_bytes(48), tmp_path / "growing.ts"
    f = open(path, "wb")
    f.write(data[:2000])
    f.flush()

    def grow():
        for start in range(2000, len(data), 1500):
            time.sleep(0.01)
            f.write(data[start:start + 1500])
            f.flush()
        f.close()

    writer = threading.Thread(target=grow)
    writer.start()
    began = time.monotonic()
    with open_live(path, 4.0, chunk_frames=5, idle_s=30.0) as live:
        chunks = list(live)
    writer.join()
    assert live.end_reason == "the writer closed the file" and time.monotonic() - began < 10
    check(chunks, expected(linear(data), 4.0))


def test_a_file_that_stops_growing_ends_after_idle_s(tmp_path):
    data, path = ts_bytes(48), tmp_path / "stalled.ts"
    with open(path, "wb") as f:  # the writer keeps it open but writes nothing more
        f.write(data)
        f.flush()
        with open_live(path, 2.0, idle_s=0.3) as live:
            chunks = list(live)
    assert live.end_reason == "no new data for 0.3 s"
    check(chunks, expected(linear(data), 2.0))


def test_a_broken_network_stream_ends_cleanly_keeping_what_was_read():
    data = ts_bytes(80)
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        conn.sendall(data[: len(data) // 2])
        time.sleep(0.2)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, not a clean end
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    live = open_live(f"tcp://127.0.0.1:{server.getsockname()[1]}", 4.0, chunk_frames=4, idle_s=5.0)
    with pytest.warns(VideoDecodeWarning, match=r"the stream broke after \d+\.\d\d s of video \(.*reset by peer.*\); "
                      "what was read before is kept"):
        chunks = list(live)
    server.close()
    assert live.end_reason.startswith("broke:")
    want = expected(linear(data), 4.0)
    n = sum(len(c.pts) for c in chunks)
    assert 4 < n < len(want)  # about half the stream came through
    check(chunks, want[:n])


def test_a_caller_behind_real_time_gets_frames_dropped_evenly_and_is_told(tmp_path):
    data, path = ts_bytes(240), tmp_path / "replay.ts"  # 30 s, replayed at 100x real time
    path.write_bytes(data)
    with pytest.warns(VideoDecodeWarning, match=r"behind real time; keeping 1 in \d+ sampled frames \(\d+ dropped"):
        with open_live(path, 4.0, chunk_frames=2, max_lag_s=1.0, speed=100.0) as live:
            chunks = []
            for chunk in live:
                chunks.append(chunk)
                time.sleep(0.05)  # a slow caller: 5 s of video time pass per chunk
    want = expected(linear(data), 4.0)
    n = sum(len(c.pts) for c in chunks)
    assert live.dropped > 0 and n + live.dropped == len(want)  # every target handed out or counted as dropped
    pts = torch.cat([c.pts for c in chunks]).numpy()
    by_time = {t: rgb for t, rgb in want}
    for got, t in zip(torch.cat([c.data for c in chunks]), pts):  # what is kept is still the right frame
        assert np.array_equal(got.permute(1, 2, 0).numpy(), by_time[t])
    k = np.round((pts - pts[0]) * 4.0).astype(int)  # target indices kept: evenly spaced runs
    assert np.all(np.diff(k) > 0) and set(np.diff(k)) <= {2 ** i for i in range(8)}


def test_sources_that_cannot_be_opened_raise_one_clear_error(tmp_path):
    with pytest.raises(VideoDecodeError, match=f"^{tmp_path / 'missing.ts'}: no such file"):
        open_live(tmp_path / "missing.ts", 1.0)
    with pytest.raises(VideoDecodeError, match="not a file, a pipe or a URL"):
        open_live(tmp_path, 1.0)
    (tmp_path / "notes.ts").write_text("not a video\n" * 100)
    with pytest.raises(VideoDecodeError, match="notes.ts: not a readable video stream"):
        open_live(tmp_path / "notes.ts", 1.0, idle_s=0.2)
    port = socket.create_server(("127.0.0.1", 0))
    closed = port.getsockname()[1]
    port.close()
    with pytest.raises(VideoDecodeError, match=f"tcp://127.0.0.1:{closed}: not a readable video stream"):
        open_live(f"tcp://127.0.0.1:{closed}", 1.0, idle_s=1.0)
    with pytest.raises(ValueError, match="rate"):
        open_live(tmp_path / "notes.ts", 0.0)
