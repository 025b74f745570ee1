"""The read plan: which passes over a file serve a request, and which decoded frames can matter. Pure functions of
times (seconds) and keyframe times, tested without files (tests/test_read_plan.py).

A request asks for the frame on screen at each of its times: the last frame whose presentation time is <= the time
plus `slack` (half a frame interval, so that times computed as index / fps hit their own frame despite the
container's rounding). The sorted times plus the slack are the *targets*. They are cut into passes: a new pass,
starting with a seek, wherever an indexed keyframe lies between two consecutive targets (decoding from that keyframe
skips everything before it), so nearby targets share one pass; without an index, where two targets are more than
`SEEK_WITHOUT_INDEX_S` apart. A stream that cannot seek is read in one pass from its first packet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

# Without a keyframe index, targets this far apart are reached by seeking.
SEEK_WITHOUT_INDEX_S = 2.0


@dataclass(frozen=True)
class Pass:
    """One decoding pass over sorted targets (seconds, slack included). `start`: seek to the keyframe at or before
    this time, or None to decode from the first packet of the file. `skip`: leave out non-reference frames that
    cannot be an answer."""

    targets: np.ndarray
    start: float | None
    skip: bool = True


def plan_read(times: np.ndarray, slack: float, keyframes: np.ndarray | None,
              seekable: bool) -> list[tuple[Pass, np.ndarray]]:
    """Requested times (N,) seconds in any order -> (pass, rows) pairs in file order: pass i serves the requests
    `rows` (int64 (n_i,)), its targets are `times[rows] + slack` in increasing order, and every request is in exactly
    one pass (a stable sort: equal times keep their request order)."""
    order = np.argsort(times, kind="stable")
    passes = plan_passes(times[order] + slack, slack, keyframes, seekable)
    return list(zip(passes, np.split(order, np.cumsum([len(p.targets) for p in passes])[:-1]))) if passes else []


def plan_passes(targets: np.ndarray, slack: float, keyframes: np.ndarray | None, seekable: bool) -> list[Pass]:
    """Sorted targets (N,) seconds -> the passes that serve them, in order (see the module docstring). `keyframes`:
    sorted indexed keyframe times (None: no index). A pass seeks to its first target less the slack (never below 0):
    the keyframe at or before the first frame that can answer it."""
    if len(targets) == 0:
        return []
    if not seekable:
        return [Pass(targets, None)]
    if keyframes is None:
        cut = np.diff(targets) > SEEK_WITHOUT_INDEX_S
    else:
        cut = np.diff(np.searchsorted(keyframes, targets, side="right")) > 0
    return [Pass(part, max(part[0] - slack, 0.0)) for part in np.split(targets, np.flatnonzero(cut) + 1)]


def useless(t: float, targets: np.ndarray, recent: Iterable[float]) -> bool:
    """Whether a frame at t can answer no target of the pass: it lies past the last one, or a packet seen (`recent`
    times) holds a later frame still at or before the first target at or after t. Decided per packet, not from the
    target being served: a threaded decoder outputs frames several packets after they are sent."""
    j = np.searchsorted(targets, t)
    return bool(j == len(targets) or any(t < u <= targets[j] for u in recent))


def nothing_left_for(window: Iterable[tuple[float | None, float | None, int]], target: float) -> bool:
    """Whether no packet from the window on, `(pts, dts, size)` in demux order, can hold a frame at or before
    `target`: a packet whose decode time is past it comes before any with a presentation time at or before it
    (decode times rise, pts >= dts)."""
    for t, dts, size in window:
        if t is None or t <= target or not size:
            return False
        if dts is not None and dts > target:
            return True
    return False


def late_requests(pts: np.ndarray, times: np.ndarray, fps: float, slack: float, duration: float) -> int:
    """How many requests inside the stream's duration were served by a frame more than two frame intervals before
    them (`pts` (N,) of the frames returned for `times` (N,)): the stream ended early or a stretch did not decode."""
    return int(np.sum((pts + 2.0 / fps + slack < times) & (times < duration)))


__all__ = ["Pass", "SEEK_WITHOUT_INDEX_S", "late_requests", "nothing_left_for", "plan_passes", "plan_read",
           "useless"]
