"""How a vision tower wants its frames, one small object per checkpoint, as timm's `pretrained_cfg` says it for an
image model: the size policy (a fixed square, or a pixel budget that keeps the aspect ratio), mean and std, and how
many consecutive frames one step of its token grid covers (2 for Qwen2.5-VL's frame pairs).

The visual encoder applies it to every decoded chunk (`DataConfig.__call__`) as transformers' torchvision-backed
processors do: a uint8 resize (`torchvision_bicubic`, where the frames are: on the CPU they were decoded on, as the
processor runs), then rescale and normalise fused in float32. The front end may do part of the work as it decodes
(`decode_size`: InternVL's square frames are resized inside the decoder, PIL's kernel in uint8, and normalised on the
device with ImageNet's mean and std, `liteframe.video.stream`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Protocol

import torch

from liteframe.video.preprocess import IMAGENET_MEAN, IMAGENET_STD, check_frames
from liteframe.video.scale import torchvision_bicubic

_CHUNK = 32  # frames resized at once: bounds memory for long 720p videos


class SizePolicy(Protocol):
    """`policy(frames, height, width) -> (h, w)`: the size the vision tower reads each frame of a video at, for
    `frames` sampled frames of `height x width`. A budget per frame ignores `frames`; a budget over the whole video
    (Qwen3-VL's processor) or a per-frame cap drawn from one (qwen-vl-utils') depends on it. `fixed`: the same size
    for every video (then `largest` gives it); `largest(frames)`: the size of `frames` frames of ordinary shape that
    give the most tokens (what a check before any video is opened assumes)."""

    fixed: bool

    def __call__(self, frames: int, height: int, width: int) -> tuple[int, int]: ...

    def largest(self, frames: int) -> tuple[int, int]: ...


@dataclass(frozen=True)
class Square:
    """Every frame resized to `side` x `side` (InternVL's preprocessing: no aspect ratio kept)."""

    side: int
    fixed = True

    def __call__(self, frames: int, height: int, width: int) -> tuple[int, int]:
        return self.side, self.side

    def largest(self, frames: int) -> tuple[int, int]:
        return self.side, self.side


@dataclass(frozen=True)
class DataConfig:
    """A vision tower's input: frames sized by `size`, scaled to [0, 1] and normalised by `mean`/`std`, read
    `frames_per_step` at a time (a count that is not whole steps repeats the last frame, as Qwen's processor does)."""

    size: SizePolicy
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    frames_per_step: int = 1

    def frame_size(self, frames: int, size: tuple[int, int] | None = None) -> tuple[int, int]:
        """`(h, w)` the tower reads for a video of `frames` sampled frames of `size` `(H, W)` (None: not known yet,
        the largest)."""
        return self.size(frames, *size) if size is not None else self.size.largest(frames)

    @property
    def decode_size(self) -> int | None:
        """The side the front end may resize and normalise frames to as it decodes (a fixed square with ImageNet's
        mean and std, what `liteframe.video.stream_video` gives), else None: uint8 frames as decoded, for `self`."""
        side = self.size.largest(1)
        square = self.size.fixed and side[0] == side[1]
        ours = (tuple(self.mean), tuple(self.std)) == (IMAGENET_MEAN, IMAGENET_STD)
        return side[0] if square and ours else None

    def padding(self, frames: int) -> int:
        """Frames repeated to make `frames` whole steps."""
        return -frames % self.frames_per_step

    def __call__(self, frames: torch.Tensor, device: torch.device | str | None = None,
                 total: int | None = None) -> torch.Tensor:
        """uint8 `(N, 3, H, W)`, a chunk of a video of `total` sampled frames (None: N) -> float32
        `(N + padding, 3, h, w)` on `device`, `(h, w) = frame_size(total, (H, W))`: what transformers' torchvision
        video processors compute. Resized in uint8 where the frames are (`torchvision_bicubic`: on the CPU, the
        processor's own pixels), moved to `device` as uint8, then rescaled and normalised as the processor fuses them,
        `(x - 255 mean) / (255 std)` in float32; the last frame repeated to whole steps."""
        check_frames(frames, "the frame transform")
        device = torch.device(device) if device is not None else frames.device
        height, width = self.frame_size(total or len(frames), tuple(frames.shape[-2:]))
        # the processor's fused constants: float32 mean and std times 1 / rescale_factor (255.0)
        mean = (torch.tensor(self.mean, device=device) * 255.0).view(1, 3, 1, 1)
        std = (torch.tensor(self.std, device=device) * 255.0).view(1, 3, 1, 1)
        out = torch.empty(len(frames) + self.padding(len(frames)), 3, height, width, device=device)
        for start in range(0, len(frames), _CHUNK):
            x = torchvision_bicubic(frames[start:start + _CHUNK], (height, width))
            out[start:start + len(x)] = x.to(device, non_blocking=True).float().sub_(mean).div_(std)
        out[len(frames):] = out[len(frames) - 1]
        return out


def warn_padding(name: str, frames: int, padding: int, per_step: int) -> None:
    """Say that `frames` were padded to whole steps of `per_step` frames by repeating the last one."""
    if padding:
        warnings.warn(f"{name} reads {per_step} frames per step: {frames} frames padded to {frames + padding} by "
                      "repeating the last frame", stacklevel=3)
