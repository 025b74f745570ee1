"""What the video layer hands out: `VideoInfo` (what a stream declares), `Frames` (decoded frames with their times),
and its input error and warning. Every other module of `liteframe.video` builds on these."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from liteframe.errors import InputError


class VideoDecodeError(InputError):
    """A video that cannot be decoded: the message names the file and the reason."""


class VideoDecodeWarning(UserWarning):
    """A video that decoded only in part, whose frames had to be repeated, or a live source that broke or fell
    behind. `missed`: how many of a read's requested frames lie where nothing decoded and repeat the last frame
    decoded before them (0 when decoding failed only between them, or for a warning about something else)."""

    def __init__(self, message: str, missed: int = 0):
        super().__init__(message)
        self.missed = missed


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


__all__ = ["Frames", "VideoDecodeError", "VideoDecodeWarning", "VideoInfo"]
