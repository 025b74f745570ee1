"""Decoding: real files from ../shared/videos and generated messy ones, against a brute-force full decode."""
from __future__ import annotations

import functools
import io
import threading
import warnings

import av
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from liteframe.testing.videos import frame_image, frame_index, make_audio_only, make_video
from liteframe.video import VideoDecodeError, VideoDecodeWarning, open_video
from liteframe.video import decode, passes
from videos import REAL_VIDEOS

VFR_PTS = np.cumsum([0.0] + [0.05 if i % 3 else 0.3 for i in range(29)])  # 30 frames, 20 fps and ~3 fps mixed


@pytest.fixture(autouse=True, params=[1, 3], ids=["1-thread", "3-threads"])
def read_threads(request):
    """Every test twice: reads on one thread (as in a DataLoader worker, where torch runs on one), and with torch on
    three, a read of several passes split between three threads, each on a container of its own."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    return {
        "long_gop": make_video(d / "long_gop.mp4", num_frames=48, gop=48),
        "bframes_mp4": make_video(d / "bframes.mp4", num_frames=40, bframes=2, gop=10),
        "bframes_mkv": make_video(d / "bframes.mkv", num_frames=40, bframes=2, gop=10),
        "bframes3_mp4": make_video(d / "bframes3.mp4", num_frames=40, bframes=3, gop=12),  # pyramid, 3 in a row
        "vfr_mkv": make_video(d / "vfr.mkv", num_frames=30, pts=VFR_PTS),
        "vfr_mp4": make_video(d / "vfr.mp4", num_frames=30, pts=VFR_PTS),
        "short_gop": make_video(d / "short_gop.mp4", num_frames=96, gop=8),
    }


def linear(path):
    """The oracle: every frame's (time, RGB pixels), decoded front to back, packets that fail skipped. With the
    reader's threading: after damage, FFmpeg's error concealment differs between threaded and unthreaded decoding."""
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        start = s.start_time or 0
        for packet in c.demux(s):
            try:
                frames = s.decode(packet)
            except av.FFmpegError:
                continue
            out += [(None if f.pts is None else float((f.pts - start) * s.time_base), f.to_ndarray(format="rgb24"))
                    for f in frames]
    return out


@functools.cache
def reference(path):
    """Brute force: every frame's (time, coded index), decoded front to back with PyAV."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        start = s.start_time or 0
        return [(float((f.pts - start) * s.time_base), frame_index(f.to_ndarray(format="rgb24"))) for f in c.decode(s)]


def count_decoded(monkeypatch) -> list:
    """From now on, the times of the frames the reader decodes (every frame it receives from the decoder)."""
    decoded = []

    class Counting(passes.Decoded):
        def __init__(self, frame, t):
            super().__init__(frame, t)
            decoded.append(t)

    monkeypatch.setattr(passes, "Decoded", Counting)
    return decoded


def linear_indices(path) -> list[int]:
    """The coded index of every frame of a linear decode."""
    return [frame_index(pixels) for _, pixels in linear(path)]


def expected(ref, t, slack):
    """The documented rule: the last frame with time <= t + slack, else the first frame."""
    before = [i for time, i in ref if time <= t + slack]
    return before[-1] if before else ref[0][1]


# --- real files -------------------------------------------------------------------------------------------------

def test_bbb_info_and_exact_frames():
    with open_video(REAL_VIDEOS / "bbb_short.mp4") as r:
        info = r.info
        assert (info.container, info.codec, info.width, info.height) == ("mov", "h264", 320, 176)
        assert (info.fps, info.duration, info.frame_count, info.rotation) == (25.0, 10.0, 250, 0)
        idx = np.array([249, 0, 100, 101, 7, 100])  # unsorted, repeated
        frames = r.read(idx / info.fps)
    assert frames.data.shape == (6, 3, 176, 320) and frames.data.dtype == torch.uint8
    assert frames.pts.dtype == torch.float64
    np.testing.assert_allclose(frames.pts.numpy(), idx / 25.0)
    assert torch.equal(frames.data[2], frames.data[5]) and not torch.equal(frames.data[2], frames.data[3])


def test_bbb_sparse_read_matches_full_decode():
    with av.open(str(REAL_VIDEOS / "bbb_short.mp4")) as c:
        full = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    idx = [3, 97, 98, 180, 249]
    with open_video(REAL_VIDEOS / "bbb_short.mp4") as r:
        frames = r.read([i / 25 for i in idx])
    for k, i in enumerate(idx):
        assert np.array_equal(frames.data[k].permute(1, 2, 0).numpy(), full[i])


def test_matroska_without_frame_count():
    with open_video(REAL_VIDEOS / "flipping_a_pancake.mkv") as r:
        info = r.info
        assert info.container == "matroska" and info.frame_count is None
        assert info.duration == pytest.approx(10.38, abs=0.01) and info.fps == 30.0
        assert info.num_frames == 311
        frames = r.read([0.0, 5.0, 10.3])
        assert r.count_decodable() == (310, None)
    np.testing.assert_allclose(frames.pts.numpy(), [0.0, 5.0, 10.3], atol=0.02)


def test_rotation_metadata_comes_out_portrait():
    with open_video(REAL_VIDEOS / "video_90.mov") as r:
        assert (r.info.rotation, r.info.width, r.info.height) == (90, 320, 568)
        frames = r.read([0.0, 0.05])
    assert frames.data.shape == (2, 3, 568, 320)
    with av.open(str(REAL_VIDEOS / "video_90.mov")) as c:
        raw = next(c.decode(video=0)).to_ndarray(format="rgb24")  # (320, 568, 3) landscape, as stored
    # a clockwise quarter turn: output row y, column x comes from stored row (H - 1 - x), column y
    assert np.array_equal(frames.data[0].permute(1, 2, 0).numpy(), np.rot90(raw, k=-1))


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_puts_the_top_left_marker_where_the_display_would(tmp_path, rotation):
    path = make_video(tmp_path / "rot.mov", num_frames=4, width=64, height=48, rotation=rotation)
    with open_video(path) as r:
        assert r.info.rotation == rotation
        img = r.read([0.0]).data[0, 0].float().numpy()
    h, w = img.shape
    assert (h, w) == ((48, 64) if rotation == 180 else (64, 48))
    corners = {"tl": img[:4, :4], "tr": img[:4, -4:], "bl": img[-4:, :4], "br": img[-4:, -4:]}
    white = {90: "tr", 180: "br", 270: "bl"}[rotation]  # clockwise turns of the top-left corner
    assert corners[white].mean() > 240
    assert all(v.mean() < 200 for k, v in corners.items() if k != white)


def test_corrupted_file_recovers_after_the_damaged_packet_and_warns_where():
    # one packet (the frame at 3.0 s) fails to decode; FFmpeg recovers from the next one, as a linear decode shows
    ref = linear(REAL_VIDEOS / "corrupted.mp4")
    assert [t for t, _ in ref] == [round(i / 10, 1) for i in range(50) if i != 30]
    with open_video(REAL_VIDEOS / "corrupted.mp4") as r:
        assert r.info.frame_count == 50
        failed = r"corrupted\.mp4: decoding failed at 3\.00s of 5\.00s \(Invalid"
        with pytest.warns(VideoDecodeWarning, match=failed) as w:
            frames = r.read(np.arange(50) / 10)
        assert w[0].message.missed == 0  # the frame at 3.0 s is one interval late: no request lies where none decoded
        assert r.count_decodable() == (49, "Invalid data found when processing input")
    expected_t = [t for t, _ in ref]
    expected_t.insert(30, 2.9)  # the frame on screen at 3.0 s is the last one decoded before it
    np.testing.assert_allclose(frames.pts.numpy(), expected_t)
    for k, (t, pixels) in enumerate(ref):
        assert np.array_equal(frames.data[k + (k >= 30)].permute(1, 2, 0).numpy(), pixels)


# --- the frame rule against brute force, on generated files with B-frames and variable frame rate ---------------

@pytest.mark.parametrize("name", ["long_gop", "bframes_mp4", "bframes_mkv", "bframes3_mp4", "vfr_mkv", "vfr_mp4",
                                  "short_gop"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(times=st.lists(st.floats(-0.5, 7.0), min_size=1, max_size=12))
def test_read_matches_full_decode(generated, name, times):
    path = generated[name]
    ref = reference(path)
    with open_video(path) as r:
        slack = 0.5 / r.info.fps
        frames = r.read(times)
    got = [frame_index(x.numpy()) for x in frames.data]
    assert got == [expected(ref, t, slack) for t in times]
    assert frames.pts.tolist() == [next(time for time, i in ref if i == g) for g in got]


def test_bframes_come_out_in_presentation_order(generated):
    with open_video(generated["bframes_mp4"]) as r:
        frames = r.read(np.arange(40) / r.info.fps)
    assert [frame_index(x.numpy()) for x in frames.data] == list(range(40))
    assert np.all(np.diff(frames.pts.numpy()) > 0)


@pytest.mark.parametrize("name", ["bframes_mp4", "bframes_mkv", "bframes3_mp4"])
def test_clips_and_gop_ends_match_full_decode(generated, name):
    # 4-frame clips (decoded in one pass), clips across a keyframe (a seek), and frames at the end of GOPs and of
    # the file, where decoding stops early and drains the decoder
    idx = [0, 1, 2, 3, 9, 10, 11, 12, 22, 23, 24, 25, 35, 36, 38, 39]
    with open_video(generated[name]) as r:
        frames = r.read(np.array(idx) / r.info.fps)
    assert [frame_index(x.numpy()) for x in frames.data] == idx
    np.testing.assert_array_equal(frames.pts.numpy(), np.array(idx) / 8)


def test_variable_frame_rate_returns_the_frame_on_screen(generated):
    with open_video(generated["vfr_mkv"]) as r:
        assert r.info.fps == 8.0  # nominal; the slack is half of 1/8 s
        frames = r.read([0.0, 0.2, 0.5, 0.6, 1.0])  # frame 3 is on screen from 0.40 to 0.70 s, frame 6 0.80 to 1.10 s
    assert [frame_index(x.numpy()) for x in frames.data] == [0, 0, 3, 3, 6]


def test_sparse_read_decodes_only_near_its_targets(generated, monkeypatch):
    with open_video(generated["short_gop"]) as r:  # 96 frames, keyframe every 8
        decoded = count_decoded(monkeypatch)
        frames = r.read([90 / 8, 30 / 8, 31 / 8])
    assert [frame_index(x.numpy()) for x in frames.data] == [90, 30, 31]
    assert len(decoded) <= 2 * 8 + 4  # two GOPs (plus decoder look-ahead), not 96 frames


def test_b_frames_that_cannot_be_the_answer_are_not_decoded(tmp_path, monkeypatch):
    path = make_video(tmp_path / "b.mp4", num_frames=48, bframes=3, gop=48)
    target = 41
    with av.open(str(path)) as c:
        keys = [round(float(p.pts * p.time_base) * 8) for p in c.demux(video=0) if p.is_keyframe]
    gop_start = max(k for k in keys if k <= target)
    with open_video(path) as r:
        decoded = count_decoded(monkeypatch)
        frames = r.read([target / 8])
    assert frame_index(frames.data[0].numpy()) == target
    # everything from the keyframe to the target would be target - gop_start + 1 frames, plus one look-ahead
    assert len(decoded) < target - gop_start + 1


def test_a_reads_passes_run_on_as_many_threads_as_torch_has(generated, read_threads, monkeypatch):
    seen, serve = [], decode._serve_all
    monkeypatch.setattr(decode, "_serve_all",
                        lambda decoder, *a: seen.append((threading.current_thread().name, decoder)) or serve(decoder, *a))
    with open_video(generated["short_gop"]) as r:  # a keyframe every 8 frames: 6 targets 16 frames apart, 6 passes
        for _ in range(2):
            frames = r.read(np.arange(90, 0, -16) / 8)
            assert [frame_index(x.numpy()) for x in frames.data] == list(range(90, 0, -16))
        others = [decoder for decoder, _ in r._workers]
    names, decoders = zip(*seen)
    if read_threads == 1:
        assert names == ("MainThread",) * 2 and decoders == (r._decoder, r._decoder)
    else:  # off the caller's thread, on three containers of their own, the same three for the second read
        assert all(name.startswith("liteframe-read") for name in names)
        assert len(others) == 3 and set(decoders[:3]) == set(decoders[3:]) == set(others)
        assert r._decoder not in decoders
    for decoder in others:  # closed with the reader
        with pytest.raises(AssertionError, match="not open"):
            next(decoder._container.demux())


def test_empty_request(generated):
    with open_video(generated["long_gop"]) as r:
        assert r.read([]).data.shape == (0, 3, 48, 64)


# --- containers that seek by timestamp, and raw streams, against a linear decode ----------------------------------

CONTAINERS = {  # suffix -> codec; each with 2 B-frames between references and a keyframe every 12 frames
    "ts": "libx264", "m2ts": "libx264", "flv": "libx264", "mpg": "mpeg2video",
}


@pytest.fixture(scope="module")
def containers(tmp_path_factory):
    d = tmp_path_factory.mktemp("containers")
    return {ext: make_video(d / f"v.{ext}", num_frames=80, gop=12, bframes=2, codec=codec)
            for ext, codec in CONTAINERS.items()}


def frame_on_screen(ref, t, slack):
    """Index into `ref` of the last frame at or before t + slack, else the first frame."""
    return max((k for k, (u, _) in enumerate(ref) if u <= t + slack), default=0)


@pytest.mark.parametrize("ext", list(CONTAINERS))
def test_timestamp_seeking_containers_return_the_linear_decode_frames(containers, ext):
    # Before the fix, a seek in these containers could land after the target's keyframe: `read` returned frames from
    # the future (MPEG-TS, FLV), frames with other timestamps than a linear read gives (MPEG-PS), and `probe`
    # counted fewer frames than decode.
    path = containers[ext]
    ref = linear(path)
    rng = np.random.default_rng(len(ext))
    requests = [np.arange(80) / 8, rng.uniform(-0.3, 10.3, 12), np.sort(rng.uniform(0, 10, 12))[::-1],
                np.array([9.9, 0.0, 5.0, 5.1, 2.4]), *[rng.uniform(0, 10, 3) for _ in range(8)]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_video(path) as r:
            assert r.info.duration == pytest.approx(10.0, abs=0.3) and r.info.fps == 8.0
            assert r.count_decodable() == (len(ref), None) == (80, None)
            slack = 0.5 / r.info.fps
            for times in requests:
                frames = r.read(times)
                for k, t in enumerate(times):
                    want_t, want = ref[frame_on_screen(ref, t, slack)]
                    assert frames.pts[k] == want_t and frames.pts[k] <= max(t + slack, ref[0][0])
                    assert np.array_equal(frames.data[k].permute(1, 2, 0).numpy(), want), (ext, t)


@pytest.mark.parametrize("codec, ext", [("libx264", "h264"), ("libx265", "hevc")])
def test_raw_streams_scan_their_duration_from_the_start(tmp_path, codec, ext):
    # Before the fix, the scan began where probing the first frame had left off, and the tail was never sampled.
    path = make_video(tmp_path / f"v.{ext}", num_frames=40, gop=8, codec=codec)
    ref = linear_indices(path)
    with open_video(path) as r:
        assert r.info.fps == 25.0  # a raw stream has no timestamps; FFmpeg assumes 25 fps
        assert r.info.num_frames == 40 and r.info.duration == pytest.approx(40 / 25)
        frames = r.read(np.array([39, 0, 20, 38]) / 25)
    assert [frame_index(x.numpy()) for x in frames.data] == [ref[39], ref[0], ref[20], ref[38]] == [39, 0, 20, 38]


def test_a_damaged_stretch_warns_where_it_failed_and_later_frames_come_back(tmp_path):
    path = make_video(tmp_path / "damaged.mp4", num_frames=48, gop=8)
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size, round(float(p.pts * p.time_base) * 8)) for p in c.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    damaged = [i for pos, size, i in packets if 19 <= i <= 21]
    for pos, size, i in packets:
        if i in damaged:
            data[pos:pos + 4] = b"\xff\xff\xff\xff"  # a NAL length past the packet's end: the decoder rejects it
    path.write_bytes(bytes(data))
    ref = linear(path)
    assert 19 / 8 not in [t for t, _ in ref] and 30 / 8 in [t for t, _ in ref]  # the file recovers
    with open_video(path) as r:
        with pytest.warns(VideoDecodeWarning, match=r"damaged\.mp4: decoding failed at 2\.38s of 6\.00s"):
            frames = r.read(np.arange(48) / 8)
    for k in range(48):
        want_t, want = ref[frame_on_screen(ref, k / 8, 1 / 16)]
        assert frames.pts[k] == want_t and np.array_equal(frames.data[k].permute(1, 2, 0).numpy(), want), k
    assert frames.pts[21] < 19 / 8 and frames.pts[40] == 5.0


# --- messy files --------------------------------------------------------------------------------------------------

def test_matroska_with_no_duration_or_count(tmp_path):
    class Unseekable(io.RawIOBase):  # the muxer cannot go back to write duration and cues
        def __init__(self, f):
            self.f = f

        def writable(self):
            return True

        def write(self, b):
            return self.f.write(b)

    path = tmp_path / "live.mkv"
    with open(path, "wb") as fh, av.open(Unseekable(fh), "w", format="matroska") as out:
        s = out.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            out.mux(s.encode(av.VideoFrame.from_ndarray(frame_image(i, 64, 48), format="rgb24")))
        out.mux(s.encode())
    with av.open(str(path)) as c:
        assert c.duration is None and c.streams.video[0].frames == 0
    with open_video(path) as r:
        assert r.info.frame_count is None and r.info.duration == pytest.approx(2.5) and r.info.num_frames == 20
        frames = r.read([2.4, 0.0])
    assert [frame_index(x.numpy()) for x in frames.data] == [19, 0]


def test_truncated_file_with_index_first_decodes_part_and_warns(tmp_path):
    whole = make_video(tmp_path / "whole.mp4", num_frames=48, options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with open_video(cut) as r:
        assert r.info.frame_count == 48
        # the half packet at the cut: a frame-threaded decoder (a read on one thread) drops it, a one-thread decoder
        # (the threads of a read) reports it
        cut_short = r"cut\.mp4: (the stream ended early|decoding failed at 1.25s)"
        with pytest.warns(VideoDecodeWarning, match=cut_short) as w:
            frames = r.read(np.arange(48) / 8)
        decodable, _ = r.count_decodable()
    got = [frame_index(x.numpy()) for x in frames.data]
    assert w[0].message.missed == sum(got[k] < k - 2 for k in range(48)) > 0  # more than two intervals early
    assert 0 < decodable < 48 and got == list(range(decodable)) + [decodable - 1] * (48 - decodable)


def _write_empty_stream(path):
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    return path


def _zero_payload(path):
    data = bytearray(make_video(path, num_frames=16, options={"movflags": "faststart"}).read_bytes())
    start = data.find(b"mdat") + 4
    data[start:] = bytes(len(data) - start)
    path.write_bytes(bytes(data))
    return path


def _truncate(path):
    whole = make_video(path.with_suffix(".whole.mp4"))  # index (moov) at the end: cut off
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return path


BAD = {
    "audio_only.m4a": (make_audio_only, "no video stream \\(streams: audio\\)"),
    "zero.mp4": (lambda p: (p.write_bytes(b""), p)[1], "empty file \\(0 bytes\\)"),
    "notes.mp4": (lambda p: (p.write_text("not a video\n" * 30), p)[1], "not a readable video container"),
    "missing.mp4": (lambda p: p, "no such file"),
    "truncated.mp4": (_truncate, "not a readable video container"),
    "encrypted.mp4": (lambda p: make_video(p, options={
        "encryption_scheme": "cenc-aes-ctr", "encryption_key": "00112233445566778899aabbccddeeff",
        "encryption_kid": "ffeeddccbbaa99887766554433221100"}), "the video stream is encrypted"),
    "garbage.mp4": (_zero_payload, "no decodable video frames"),
    "no_frames.mp4": (_write_empty_stream, "no video stream"),
    "no_frames.mkv": (_write_empty_stream, "not a readable video container"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_undecodable_files_raise_one_typed_error(tmp_path, name):
    make, reason = BAD[name]
    path = make(tmp_path / name)
    with pytest.raises(VideoDecodeError, match=f"^{tmp_path / name}: {reason}"):
        open_video(path)


def test_video_decode_error_is_input_error():
    from liteframe.errors import InputError
    assert issubclass(VideoDecodeError, InputError) and issubclass(VideoDecodeError, ValueError)


def test_reader_closes(generated):
    r = open_video(generated["long_gop"])
    with r:
        pass
    with pytest.raises(Exception):
        r.read([0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file reads without warnings
        with open_video(generated["long_gop"]) as r:
            r.read(np.arange(48) / 8)
