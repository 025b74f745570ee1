"""Preprocessing against PIL (what InternVL resizes with) and a float64 normalisation; load_video and stream_video
end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

import threading

from liteframe.video import VideoDecodeError, load_video, normalize, open_video, preprocess, sample_frames, stream_video
from liteframe.video.preprocess import IMAGENET_MEAN, IMAGENET_STD
from videos import REAL_VIDEOS


def smooth_frames(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, h, w) of low-frequency patterns (PIL rounds to uint8 between its two passes: noise would
    measure that rounding, not the filter)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    f = rng.uniform(1, 4, (n, 3, 2))
    phase = rng.uniform(0, 6.3, (n, 3, 1, 1))
    img = 127.5 + 100 * np.sin(2 * np.pi * (f[..., :1, None] * y + f[..., 1:, None] * x) + phase)
    return torch.from_numpy(img.round().astype(np.uint8))


def reference(frame: torch.Tensor, size: int) -> np.ndarray:
    """InternVL's path: PIL bicubic resize, /255, ImageNet mean/std, in float64. (3, H, W) -> (3, size, size)."""
    img = Image.fromarray(frame.permute(1, 2, 0).numpy()).resize((size, size), Image.BICUBIC)
    x = np.asarray(img, np.float64).transpose(2, 0, 1) / 255
    return (x - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]


@settings(max_examples=10, deadline=None)
@given(h=st.integers(20, 200), w=st.integers(20, 200), size=st.sampled_from([28, 56, 112]), seed=st.integers(0, 99))
def test_matches_pil_bicubic_reference(h, w, size, seed):
    frames = smooth_frames(2, h, w, seed)
    out = preprocess(frames, size)
    assert out.shape == (2, 3, size, size) and out.dtype == torch.float32
    for i in range(2):
        err = np.abs(out[i].double().numpy() - reference(frames[i], size))
        # PIL rounds to uint8 between passes: a level or two of 255, divided by std ~0.225
        assert err.max() < 3 / 255 / 0.224 and err.mean() < 0.6 / 255 / 0.224


def test_constant_frame_is_exactly_normalised():
    frames = torch.full((3, 3, 17, 29), 200, dtype=torch.uint8)
    out = preprocess(frames, size=112).double()
    mean, std = (torch.tensor(v, dtype=torch.float64) for v in (IMAGENET_MEAN, IMAGENET_STD))
    want = (200 / 255 - mean) / std
    torch.testing.assert_close(out, want.view(1, 3, 1, 1).expand_as(out), atol=1e-5, rtol=0)


def test_batched_in_chunks_equals_frame_by_frame():
    frames = smooth_frames(40, 30, 50)  # more than one chunk
    out = preprocess(frames, size=56)
    one_by_one = torch.cat([preprocess(f[None], size=56) for f in frames])
    torch.testing.assert_close(out, one_by_one)


def test_rejects_float_input():
    with pytest.raises(ValueError, match="uint8 frames"):
        preprocess(torch.rand(1, 3, 8, 8))


def test_load_video_end_to_end():
    pixels, sample = load_video(REAL_VIDEOS / "bbb_short.mp4", num_frames=8, size=56, clip_frames=4)
    assert pixels.shape == (8, 3, 56, 56) and pixels.dtype == torch.float32
    np.testing.assert_array_equal(sample.indices, [25, 50, 75, 100, 150, 175, 200, 225])  # 2 clips at 1 fps
    assert -2.2 < pixels.min() < pixels.max() < 2.7 and not sample.repeated
    uniform, s2 = load_video(REAL_VIDEOS / "bbb_short.mp4", num_frames=4, strategy="uniform", size=56)
    assert uniform.shape == (4, 3, 56, 56) and list(s2.indices) == [31, 93, 156, 218]


# --- the swscale path: decoder resizes from YUV, the device only normalises ----------------------------------------

def test_normalize_is_the_float64_formula():
    x = torch.randint(0, 256, (3, 3, 5, 7), dtype=torch.uint8)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    out = normalize(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out.double(), (x.double() / 255 - mean) / std, atol=1e-6, rtol=0)
    assert normalize(x, dtype=torch.bfloat16).dtype == torch.bfloat16


def pil_reference_uint8(rgb: np.ndarray, size: int) -> np.ndarray:
    """InternVL's resize of a decoded RGB frame (H, W, 3) -> (size, size, 3) uint8."""
    return np.array(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))


@pytest.mark.parametrize("name", ["bbb_short.mp4", "flipping_a_pancake.mkv", "corrupted.mp4"])
def test_decoder_resizes_are_close_to_pil_bicubic_of_the_rgb_frame(name):
    """The default `exact` scaler meets the issue's goal (mean <= 0.5, max <= 8 levels) with room to spare: torch's
    uint8 antialiased bicubic is PIL's kernel and rounding. `swscale` resizes in YUV with another kernel: about one
    level off on average (measured bounds, docs/results/frontend.md). 448 px: up- and downscaling."""
    with open_video(REAL_VIDEOS / name) as r:
        times = [0.5, 1.5]
        full = r.read(times).data.permute(0, 2, 3, 1).numpy()
        exact = r.read(times, size=448).data.permute(0, 2, 3, 1).numpy()
        swscale = r.read(times, size=448, scaler="swscale").data.permute(0, 2, 3, 1).numpy()
        with pytest.raises(ValueError, match="unknown scaler 'area'"):
            r.read(times, size=448, scaler="area")
    assert exact.shape == swscale.shape == (2, 448, 448, 3)
    for f, e, s in zip(full, exact, swscale):
        want = pil_reference_uint8(f, 448).astype(int)
        err, loose = np.abs(e.astype(int) - want), np.abs(s.astype(int) - want)
        assert err.mean() < 0.05 and err.max() <= 2
        assert loose.mean() < 2.0 and np.percentile(loose, 99) < 24


def test_decoder_resizes_keep_rotation():
    with open_video(REAL_VIDEOS / "video_90.mov") as r:  # stored 568x320 landscape, displayed portrait
        full = r.read([0.5]).data
        square = r.read([0.5], size=64).data
        loose = r.read([0.5], size=64, scaler="swscale").data
    want = torch.from_numpy(pil_reference_uint8(full[0].permute(1, 2, 0).numpy(), 64)).permute(2, 0, 1)
    # resized before it is turned: PIL's rounding between its passes then falls on the other axis (a few levels)
    err = (square[0].int() - want.int()).abs()
    assert err.float().mean() < 0.2 and err.max() <= 4
    assert (loose[0].int() - want.int()).abs().float().mean() < 3  # a wrong turn is ~40


def test_load_video_swscale_against_torch_resize():
    a, sa = load_video(REAL_VIDEOS / "flipping_a_pancake.mkv", num_frames=4, size=56, clip_frames=4)
    b, sb = load_video(REAL_VIDEOS / "flipping_a_pancake.mkv", num_frames=4, size=56, resize="torch",
                    clip_frames=4)
    np.testing.assert_array_equal(sa.indices, sb.indices)
    assert a.shape == b.shape == (4, 3, 56, 56) and (a - b).abs().mean() < 0.05
    with pytest.raises(ValueError, match="unknown resize 'pil'"):
        load_video(REAL_VIDEOS / "flipping_a_pancake.mkv", num_frames=4, size=56, resize="pil", clip_frames=4)


# --- stream_video: background decoding through a bounded queue ----------------------------------------------------

def test_stream_video_chunks_equal_one_read():
    with open_video(REAL_VIDEOS / "bbb_short.mp4") as r:
        sample = sample_frames(r.info, 12, "clips", clip_frames=4)
        whole = normalize(r.read(sample.timestamps, size=56).data)
    stream = stream_video(REAL_VIDEOS / "bbb_short.mp4", sample, chunk_frames=5, size=56, dtype=torch.float64)
    chunks = list(stream)
    assert [c.start for c in chunks] == [0, 5, 10] and [len(c.pixels) for c in chunks] == [5, 5, 2]
    assert all(c.pixels.dtype == torch.float64 for c in chunks)
    torch.testing.assert_close(torch.cat([c.pixels for c in chunks]).float(), whole)
    np.testing.assert_allclose(torch.cat([c.pts for c in chunks]).numpy(), sample.timestamps)
    assert stream.decode_s > 0 and 0 <= stream.wait_s


def test_stream_video_raises_the_workers_error_and_stops_when_left_early(tmp_path):
    with pytest.raises(VideoDecodeError, match="no such file"):
        list(stream_video(tmp_path / "missing.mp4", [0.0], chunk_frames=1, size=32))
    before = threading.active_count()
    for chunk in stream_video(REAL_VIDEOS / "bbb_short.mp4", np.arange(40) / 4, chunk_frames=2, size=32,
                              prefetch=1):
        break  # the worker blocks on a full queue: leaving must not hang and must end the thread
    assert threading.active_count() == before and chunk.pixels.shape == (2, 3, 32, 32)


def test_stream_video_from_an_open_reader_without_a_thread_equals_one_read():
    """prefetch=0 decodes in the caller's thread (no thread started, wait = decode) from the caller's reader, which
    stays open; the torch resize path goes through the same stream."""
    with open_video(REAL_VIDEOS / "bbb_short.mp4") as r:
        sample = sample_frames(r.info, 8, "clips", clip_frames=4)
        whole = normalize(r.read(sample.timestamps, size=56).data)
        full = preprocess(r.read(sample.timestamps).data, 56)
        before = threading.active_count()
        stream = stream_video(r, sample, chunk_frames=3, size=56, prefetch=0)
        chunks = [(c.pixels, threading.active_count()) for c in stream]
        torch.testing.assert_close(torch.cat([p for p, _ in chunks]), whole)
        assert all(n == before for _, n in chunks) and stream.wait_s == stream.decode_s > 0
        torched = torch.cat([c.pixels for c in stream_video(r, sample, 3, 56, resize="torch")])
        torch.testing.assert_close(torched, full)
        assert len(r.read([0.0]).data) == 1  # still open


def test_exact_resize_runs_torch_on_one_thread_and_restores_the_callers_threads(monkeypatch):
    import torch.nn.functional as F

    seen, interpolate = [], F.interpolate
    monkeypatch.setattr(F, "interpolate", lambda *a, **k: seen.append(torch.get_num_threads()) or interpolate(*a, **k))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        load_video(REAL_VIDEOS / "bbb_short.mp4", num_frames=4, size=56, clip_frames=4)
        assert seen == [1] * 4 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
