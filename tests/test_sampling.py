"""Frame sampling: properties of every strategy over random videos, and the training sampler's determinism."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from liteframe.video import SAMPLERS, TrainSampler, VideoDecodeWarning, VideoInfo, sample_frames


def info(duration: float, fps: float = 30.0) -> VideoInfo:
    return VideoInfo("v.mp4", "mov", "h264", 64, 48, 0, fps, duration, round(duration * fps))


videos = st.builds(info, st.floats(0.5, 3600.0), st.sampled_from([10.0, 24.0, 25.0, 29.97, 30.0, 60.0]))
budgets = st.sampled_from([4, 8, 16, 32, 64, 128, 256, 512])


@settings(max_examples=60, deadline=None)
@given(v=videos, n=budgets, strategy=st.sampled_from(["uniform", "clips"]))
def test_count_holds_and_indices_are_sorted_in_range(v, n, strategy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoDecodeWarning)
        s = sample_frames(v, n, strategy, **({"clip_frames": 4} if strategy == "clips" else {}))
    assert len(s) == n and s.indices.dtype == np.int64
    assert np.all(np.diff(s.indices) >= 0) and s.indices[0] >= 0 and s.indices[-1] < v.num_frames
    np.testing.assert_allclose(s.timestamps, s.indices / v.fps)
    assert s.repeated == (len(np.unique(s.indices)) < n)
    assert s.repeated == (v.num_frames < n) or strategy == "clips"


@settings(max_examples=60, deadline=None)
@given(v=videos, n=budgets)
def test_clips_are_dense_four_frame_clips_at_least_1fps_spread_evenly(v, n):
    assume(v.num_frames >= 4 * n)  # enough frames that no clip repeats one
    s = sample_frames(v, n, "clips", clip_frames=4)
    t = s.timestamps.reshape(n // 4, 4)
    rate = max(1.0, n / (v.num_frames / v.fps))
    np.testing.assert_allclose(np.diff(t, axis=1), 1 / rate, atol=1.01 / v.fps)  # in-clip step, up to snapping
    starts = t[:, 0]
    if n > 4:
        gaps = np.diff(starts)
        # evenly spread: each start snaps to a frame, so a gap may be off by up to two frame steps
        np.testing.assert_allclose(gaps, gaps.mean(), atol=2.01 / v.fps)
    assert starts[0] < v.duration / (n // 4) and t[-1, -1] > v.duration * (1 - 1 / (n // 4))  # covers the video


def test_clips_at_high_rate_equal_uniform():
    v = info(20.0)
    np.testing.assert_array_equal(sample_frames(v, 64, "clips", clip_frames=4).indices,
                                  sample_frames(v, 64, "uniform").indices)


def test_clips_layout_example():
    # 2 clips of 4 frames at 1 fps, centred in halves of 60 s
    s = sample_frames(info(60.0, fps=10.0), 8, "clips", clip_frames=4)
    np.testing.assert_array_equal(s.timestamps, [13.5, 14.5, 15.5, 16.5, 43.5, 44.5, 45.5, 46.5])


def test_clips_need_a_multiple_of_four():
    with pytest.raises(ValueError, match="multiple of 4, got 6"):
        sample_frames(info(10.0), 6, "clips", clip_frames=4)


@settings(max_examples=40, deadline=None)
@given(v=videos, n=budgets, rate=st.floats(0.1, 8.0))
def test_fps_is_a_rate_capped_at_a_budget(v, n, rate):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoDecodeWarning)
        s = sample_frames(v, n, "fps", rate=rate)
    duration = v.num_frames / v.fps
    assert len(s) == max(1, min(n, int(np.floor(duration * rate))))
    if 1 < len(s) < n and v.fps >= 2 * rate:
        assert np.median(np.diff(s.timestamps)) == pytest.approx(1 / rate, rel=0.05, abs=1.01 / v.fps)


def test_short_video_repeats_frames_and_says_so():
    v = info(0.5, fps=10.0)  # 5 frames
    with pytest.warns(VideoDecodeWarning, match="5 frames .* fewer than the 16 sampled with 'uniform'; frames repeat"):
        s = sample_frames(v, 16, "uniform")
    assert s.repeated and len(s) == 16 and set(s.indices) == set(range(5))
    assert np.all(np.bincount(s.indices) >= 3)  # spread: every frame used about equally


def test_unknown_strategy_and_registry():
    assert set(SAMPLERS.names()) >= {"uniform", "clips", "fps"}
    with pytest.raises(ValueError, match="unknown frame sampling strategy 'random'"):
        sample_frames(info(10.0), 8, "random")


@settings(max_examples=40, deadline=None)
@given(v=videos, seed=st.integers(0, 2**16), key=st.integers(0, 10**6))
def test_training_sampler_is_deterministic_and_in_range(v, seed, key):
    sampler = TrainSampler(4, seed=seed)
    a, b = sampler(v, key), sampler(v, key)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert len(a) in (128, 256, 512) and np.all(np.diff(a.indices) >= 0)
    t = a.timestamps.reshape(-1, 4)
    duration = v.num_frames / v.fps
    step = np.diff(t, axis=1)
    if not a.repeated:  # in-clip rate between 1 fps and max(4 fps, N / duration)
        assert step.max() <= 1.0 + 1.01 / v.fps
        assert step.min() >= min(0.25, duration / len(a)) - 1.01 / v.fps


def test_training_sampler_varies_with_key_and_seed():
    v = info(600.0)
    samples = [TrainSampler(4, seed=0)(v, k) for k in range(12)]
    assert len({len(s) for s in samples}) > 1  # budgets drawn
    assert len({tuple(s.indices[:4]) for s in samples}) == 12
    assert not np.array_equal(TrainSampler(4, seed=1)(v, 0).indices, samples[0].indices)


def test_training_sampler_for_short_distillation_clips():
    v = info(30.0)
    sampler = TrainSampler(4, budgets=(8,), rates=(1.0, 4.0), seed=3)
    for key in range(5):
        s = sampler(v, key)
        assert len(s) == 8 and not s.repeated
        steps = np.diff(s.timestamps.reshape(2, 4), axis=1)
        assert np.all((steps >= 0.25 - 1 / 30) & (steps <= 1.0 + 1 / 30))


@pytest.mark.parametrize("clip", [1, 2, 4, 8])
def test_clips_are_clip_frames_long(clip):
    v = info(600.0)
    s = sample_frames(v, 16, "clips", clip_frames=clip)
    steps = np.diff(s.timestamps.reshape(16 // clip, clip), axis=1)
    np.testing.assert_allclose(steps, 1.0, atol=1.01 / v.fps)  # 1 fps inside a clip
    gaps = s.timestamps.reshape(16 // clip, clip)[1:, 0] - s.timestamps.reshape(16 // clip, clip)[:-1, -1]
    assert np.all(gaps > 2.0)  # between clips: the rest of the video, spread evenly
    t = TrainSampler(clip, budgets=(16,))(v, 0).timestamps.reshape(16 // clip, clip)
    assert np.all(np.diff(t, axis=1) <= 1.01) and (clip == 1 or np.all(t[1:, 0] - t[:-1, -1] >= 0))
    if clip > 1:
        with pytest.raises(ValueError, match=f"multiple of {clip}"):
            sample_frames(v, clip + 1, "clips", clip_frames=clip)


@settings(max_examples=30, deadline=None)
@given(v=videos, n=budgets, rate=st.floats(0.5, 8.0))
def test_clips_take_a_target_rate_for_their_spacing(v, n, rate):
    # what LMA does per sample: a drawn budget and frame rate; frames inside a clip are at max(rate, n / duration)
    assume(v.num_frames >= 8 * n and v.duration * min(rate, v.fps) >= n)
    s = sample_frames(v, n, "clips", rate=rate, clip_frames=4)
    step = np.diff(s.timestamps.reshape(n // 4, 4), axis=1)
    np.testing.assert_allclose(step, 1 / max(rate, n / (v.num_frames / v.fps)), atol=1.01 / v.fps)


def test_videollm_clips_span_the_families_grid_step():
    """Qwen2.5-VL's ViT step is a frame pair, so its 16x clip is 8 frames: `VideoLLM.encode` samples 2 dense clips
    of 8 frames at 1 fps from 16 frames (it sampled 4 clips of 4, which a 4-step WAP block then straddled), and at
    4x clips of 2 frames (a count such as 6 was refused as not a multiple of 4)."""
    from liteframe.compression import get_compression
    from liteframe.llm.videollm import sample_clips

    v = info(600.0, fps=10.0)
    pairs = sample_clips(v, 16, get_compression(16).clip_frames(2)).timestamps
    np.testing.assert_allclose(np.diff(pairs.reshape(2, 8), axis=1), 1.0)  # each clip: 8 frames 1 s apart
    assert pairs[8] - pairs[7] > 100  # then a long gap to the second clip
    np.testing.assert_array_equal(sample_clips(v, 16, get_compression(16).clip_frames()).timestamps,
                                  sample_frames(v, 16, "clips", clip_frames=4).timestamps)  # InternVL: 4-frame clips
    short = sample_clips(v, 6, get_compression(4).clip_frames(2)).timestamps
    np.testing.assert_allclose(np.diff(short.reshape(3, 2), axis=1), 1.0)


def test_clip_frames_is_a_positive_count_and_required_for_clips():
    with pytest.raises(ValueError, match="clip_frames must be at least 1, got 0"):
        sample_frames(info(10.0), 4, "clips", clip_frames=0)
    with pytest.raises(TypeError, match="clip_frames"):
        sample_frames(info(10.0), 4, "clips")


def test_video_does_not_depend_on_the_compression_contract():
    """Issue 18: the sampler takes frames per clip; the caller derives them from its compression."""
    import ast
    from pathlib import Path

    import liteframe.video

    for path in Path(liteframe.video.__file__).parent.glob("*.py"):
        imported = {node.module for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)}
        assert "liteframe.compression" not in imported, path
