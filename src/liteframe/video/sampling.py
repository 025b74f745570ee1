"""Which frames to look at: frame indices and timestamps, chosen from a `VideoInfo` before any decoding.

Index i stands for the frame at time i / fps (the nominal frame grid; with a variable frame rate the decoder returns
the frame on screen at that time). Every strategy returns indices in increasing order. When the video has fewer
distinct frames than asked for, indices repeat so that the count holds, `repeated` is True and a warning says so.

- `uniform`: N frames at the centres of N equal segments of the video.
- `clips`: N/c dense clips of c = `clip_frames` consecutive sample slots spread evenly over the video (the caller
  derives c from its compression: 4 frames at 16x, 1 at 4x, twice that for Qwen2.5-VL's frame pairs), frames inside
  a clip at max(rate, N / duration) fps (rate 1 fps by default: dense clips at >= 1 fps, SPEC 5-7). At rate
  N / duration the clips touch and this is `uniform`.
- `fps`: frames at `rate` fps, at most N (beyond N the rate drops to N / duration, which is `uniform`).
- `TrainSampler`: `clips` with the budget drawn from a set and the in-clip rate from a range, clips placed at random
  gaps, deterministic for (seed, key) (SPEC 5 and 6). A job that draws its own budget and rate per sample (LMA) calls
  `sample_frames(info, budget, "clips", rate=fps, clip_frames=...)` instead.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from liteframe.errors import InputError
from liteframe.registry import Registry
from liteframe.video.decode import VideoDecodeWarning, VideoInfo

SAMPLERS: Registry = Registry("frame sampling strategy")


@dataclass
class FrameSample:
    """`indices` int64 (N,) on the nominal frame grid; `timestamps` float64 (N,) seconds (= indices / fps);
    `repeated`: some frames appear more than once because the video is too short for the budget."""

    indices: np.ndarray
    timestamps: np.ndarray
    repeated: bool

    def __len__(self) -> int:
        return len(self.indices)


def sample_frames(info: VideoInfo, num_frames: int, strategy: str = "clips", **kw) -> FrameSample:
    """Choose `num_frames` frames of a video with a registered strategy (`uniform`, `clips`, `fps`); `kw` go to the
    strategy: `rate` (fps) for `clips` and `fps`, `clip_frames` (frames per clip, required) for `clips`."""
    if num_frames < 1:
        raise InputError(f"num_frames must be at least 1, got {num_frames}")
    sample = _from_times(info, SAMPLERS.get(strategy)(info, num_frames, **kw))
    if sample.repeated:
        warnings.warn(f"{info.path}: {info.num_frames} frames ({info.duration:.2f}s) are fewer than the {len(sample)} "
                      f"sampled with {strategy!r}; frames repeat", VideoDecodeWarning, stacklevel=2)
    return sample


@SAMPLERS.register("uniform")
def uniform(info: VideoInfo, num_frames: int) -> np.ndarray:
    """Sample times (num_frames,): the centres of equal segments."""
    return (np.arange(num_frames) + 0.5) * (_duration(info) / num_frames)


@SAMPLERS.register("clips")
def clips(info: VideoInfo, num_frames: int, *, clip_frames: int, rate: float = 1.0) -> np.ndarray:
    """Sample times (num_frames,): num_frames / c clips of c = `clip_frames` frames at max(rate, num_frames /
    duration) fps, spread evenly with equal gaps."""
    duration = _duration(info)
    window, num_clips = _clip_window(duration, num_frames, rate, clip_frames)
    gap = (duration - num_clips * window) / num_clips
    starts = gap / 2 + np.arange(num_clips) * (window + gap)
    return _clip_times(starts, window, clip_frames)


@SAMPLERS.register("fps")
def fps(info: VideoInfo, num_frames: int, rate: float = 1.0) -> np.ndarray:
    """Sample times (min(num_frames, duration x rate),): one frame per 1 / rate seconds, capped at num_frames."""
    if rate <= 0:
        raise InputError(f"rate must be positive, got {rate}")
    duration = _duration(info)
    count = max(1, min(num_frames, math.floor(duration * rate)))
    step = duration / count if count == num_frames else 1.0 / rate  # at the cap the rate drops to N / duration
    return (duration - count * step) / 2 + (np.arange(count) + 0.5) * step


@dataclass
class TrainSampler:
    """Training frame sampling: `sampler(info, key) -> FrameSample`. The budget is drawn from `budgets`, the minimum
    in-clip rate uniformly from `rates` (fps), and the clips sit at random gaps; the same (seed, key) always gives the
    same sample. For CTD on short clips of T frames use `budgets=(T,)`. Clips are `clip_frames` frames long."""

    clip_frames: int
    budgets: tuple[int, ...] = (128, 256, 512)
    rates: tuple[float, float] = (1.0, 4.0)
    seed: int = 0

    def __call__(self, info: VideoInfo, key: int) -> FrameSample:
        rng = np.random.default_rng([self.seed, key])
        num_frames = int(rng.choice(self.budgets))
        duration = _duration(info)
        window, num_clips = _clip_window(duration, num_frames, rng.uniform(*self.rates), self.clip_frames)
        free = duration - num_clips * window
        starts = np.sort(rng.uniform(0.0, free, num_clips)) + np.arange(num_clips) * window
        return _from_times(info, _clip_times(starts, window, self.clip_frames))


def _clip_window(duration: float, num_frames: int, rate: float, clip: int) -> tuple[float, int]:
    """(seconds one clip of `clip` frames spans, number of clips) for clips at max(rate, num_frames / duration) fps."""
    if clip < 1:
        raise InputError(f"clip_frames must be at least 1, got {clip}")
    if num_frames % clip:
        raise InputError(f"clip sampling needs a frame count that is a multiple of {clip}, got {num_frames}")
    if rate <= 0:
        raise InputError(f"rate must be positive, got {rate}")
    rate = max(rate, num_frames / duration)
    return clip / rate, num_frames // clip


def _clip_times(starts: np.ndarray, window: float, clip: int) -> np.ndarray:
    """(K,) clip starts -> (clip * K,) times at the centres of each clip's slots."""
    return (starts[:, None] + (np.arange(clip) + 0.5) * (window / clip)).reshape(-1)


def _from_times(info: VideoInfo, times: np.ndarray) -> FrameSample:
    """Snap times to the nominal frame grid."""
    indices = np.clip(np.floor(times * info.fps), 0, info.num_frames - 1).astype(np.int64)
    return FrameSample(indices, indices / info.fps, bool(len(np.unique(indices)) < len(indices)))


def sampled_fps(info: VideoInfo, count: int) -> float:
    """The frame rate of a sample of `count` frames of the video: frames per second of the video they are spread
    over, `count / (num_frames / fps)` (the duration every strategy samples, the nominal frame grid's). It is
    transformers' `VideoMetadata.sampled_fps` (`len(frames_indices) / total_num_frames * fps`) for the same frames,
    whichever way they were spread: clips at a higher rate inside each clip (`clips`) have the rate of the whole
    sample, as uniform frames of the same count would."""
    return count * info.fps / info.num_frames


def _duration(info: VideoInfo) -> float:
    # The frame grid is what can be sampled; the declared duration may include a trailing gap or be missing.
    return info.num_frames / info.fps


__all__ = ["FrameSample", "SAMPLERS", "TrainSampler", "sample_frames", "sampled_fps"]
