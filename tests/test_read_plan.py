"""The read plan (video/plan.py) without files: hypothesis-drawn requests, keyframe indexes and packet streams."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from liteframe.video.plan import SEEK_WITHOUT_INDEX_S, late_requests, nothing_left_for, plan_read, useless

times_st = st.lists(st.floats(-1.0, 60.0, allow_nan=False).map(lambda t: round(t, 3)), max_size=40)
keys_st = st.none() | st.lists(st.floats(0.0, 60.0, allow_nan=False), min_size=1, max_size=20).map(sorted)


@given(times=times_st, keys=keys_st, seekable=st.booleans(), fps=st.sampled_from([8.0, 25.0, 29.97]))
def test_every_request_is_served_once_in_file_order(times, keys, seekable, fps):
    times, slack = np.array(times, np.float64), 0.5 / fps
    keyframes = None if keys is None else np.array(keys)
    work = plan_read(times, slack, keyframes, seekable)
    rows = np.concatenate([r for _, r in work]) if work else np.array([], np.int64)
    assert sorted(rows.tolist()) == list(range(len(times)))  # each request exactly once
    targets = np.concatenate([p.targets for p, _ in work]) if work else np.array([])
    assert np.all(np.diff(targets) >= 0)  # passes in file order, targets sorted inside each
    for plan, r in work:
        np.testing.assert_array_equal(plan.targets, times[r] + slack)
        assert len(plan.targets) > 0
        if plan.start is not None:  # a seek to the keyframe at or before the pass's earliest request
            assert plan.start == pytest.approx(max(times[r[0]], 0.0), abs=1e-9)
    equal = [(times[a] == times[b], a < b) for a, b in zip(rows[:-1], rows[1:])]
    assert all(before for same, before in equal if same)  # stable: equal times keep the request order


grid_st = st.lists(st.integers(-4, 240), max_size=40).map(lambda v: np.array(v) / 4)  # keyframes on the frames' grid


@given(times=grid_st, keys=st.none() | grid_st.map(np.unique), slack=st.sampled_from([0.0, 0.02]))
def test_a_pass_starts_wherever_a_keyframe_separates_two_targets(times, keys, slack):
    keyframes = None if keys is None or len(keys) == 0 else keys
    work = plan_read(times, slack, keyframes, seekable=True)
    targets = [p.targets for p, _ in work]

    def separated(a, b):  # decoding from a keyframe between them skips everything before b's frame
        if keyframes is None:
            return b - a > SEEK_WITHOUT_INDEX_S
        return bool(np.any((keyframes > a) & (keyframes <= b)))

    for part in targets:  # nothing separates targets of one pass
        assert not any(separated(a, b) for a, b in zip(part[:-1], part[1:]))
    for before, after in zip(targets[:-1], targets[1:]):  # and something separates consecutive passes
        assert separated(before[-1], after[0])
    assert all(p.start is not None for p, _ in work)


@given(times=times_st)
def test_a_stream_that_cannot_seek_is_read_once_from_its_start(times):
    work = plan_read(np.array(times, np.float64), 0.02, np.array([0.0, 10.0]), seekable=False)
    assert len(work) == (1 if times else 0)
    assert all(p.start is None for p, _ in work)


frames_st = st.lists(st.integers(0, 400), min_size=1, max_size=60, unique=True).map(lambda v: np.sort(v) / 8)
targets_st = st.tuples(st.lists(st.integers(-8, 420), min_size=1, max_size=20), st.sampled_from([0.0, 1 / 16])).map(
    lambda v: np.sort(v[0]) / 8 + v[1])  # on the frames' grid, or half a frame after it (the slack)


@given(frames=frames_st, targets=targets_st)
def test_a_frame_is_useless_exactly_when_it_answers_no_target(frames, targets):
    """With every packet seen, the frames judged useful are the answers: each target's last frame at or before it."""
    answers = {frames[frames <= t].max() for t in targets if np.any(frames <= t)}
    useful = {t for t in frames if not useless(t, targets, frames)}
    assert useful == answers


@st.composite
def packet_streams(draw):
    """Packets in decode order: decode times rise, presentation time >= decode time; then a window start and a
    target."""
    n = draw(st.integers(1, 30))
    dts = np.sort(draw(st.lists(st.integers(0, 100), min_size=n, max_size=n, unique=True))) / 10
    delay = np.array(draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))) / 10
    sizes = draw(st.lists(st.integers(0, 4).map(lambda v: 500 if v else 0), min_size=n, max_size=n))  # few empty
    packets = list(zip(dts + delay, dts, sizes))
    target = draw(st.sampled_from([p[0] for p in packets]) | st.integers(-5, 140).map(lambda v: v / 10))
    return packets, draw(st.integers(0, n - 1)), target


@settings(max_examples=400)
@given(stream=packet_streams(), lookahead=st.integers(1, 8))
def test_nothing_left_means_no_later_packet_can_hold_a_frame_at_or_before_the_target(stream, lookahead):
    packets, start, target = stream
    window = packets[start:start + lookahead]
    if nothing_left_for(window, target):
        assert all(pts > target for pts, _, _ in packets[start:])
    # a window that holds a frame at or before the target is never done
    if any(pts <= target for pts, _, size in window):
        assert not nothing_left_for(window, target)


def test_nothing_left_needs_a_timed_packet_with_a_decode_time_past_the_target():
    assert not nothing_left_for([(None, 1.0, 10)], 0.5)  # no timestamp: cannot tell
    assert not nothing_left_for([(2.0, None, 10)], 0.5)  # no decode time and nothing after it
    assert not nothing_left_for([(2.0, 1.0, 0)], 0.5)  # an empty (flush) packet
    assert not nothing_left_for([(1.0, 0.5, 10), (2.0, 1.5, 10)], 1.0)  # a frame exactly at the target
    assert not nothing_left_for([(2.0, 0.6, 10), (0.9, 0.8, 10)], 1.0)  # decode time not yet past the target
    assert nothing_left_for([(2.0, 1.0, 10), (0.2, 0.1, 10)], 0.5)  # impossible order: dts rises; trusted


def test_late_requests_count_frames_more_than_two_intervals_early_inside_the_video():
    # at 10 fps with 0.05 s slack: 1.2 s is 2 intervals after its frame (not counted), 1.4 s is 4 (counted), and
    # 3.5 s lies past the 3 s video
    pts = np.array([0.0, 1.0, 1.0, 1.0, 1.0])
    times = np.array([0.0, 1.0, 1.2, 1.4, 3.5])
    assert late_requests(pts, times, fps=10.0, slack=0.05, duration=3.0) == 1
