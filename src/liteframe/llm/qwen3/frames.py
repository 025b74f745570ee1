"""Frames as Qwen3-VL's and Qwen3.5's video processor (`Qwen3VLVideoProcessor`) prepares them, without torchvision.

- Budget: `size` of the checkpoint's `video_preprocessor_config.json`, `shortest_edge`/`longest_edge` being the
  least and most pixels of the WHOLE video (frames x height x width, the frame count rounded to pairs), not of one
  frame as in Qwen2.5-VL: the more frames, the smaller each. transformers' own `smart_resize` of the Qwen3-VL
  video processor gives the size (factor `patch x merge` = 32). The per-frame cap `cap_pixels_per_frame` is off:
  the released configs do not set it and transformers 5.25 leaves it off by default.
- Resize: bicubic with antialiasing on uint8 frames, output rounded to uint8 (torchvision's `resize` on a uint8
  tensor). STAND-IN: `resize_frames` computes it with `torch.nn.functional.interpolate` in float32, then rounds;
  torchvision's uint8 kernel may differ by one grey level on some pixels. Swap in the `video` helper's
  torchvision-equivalent uint8 resize when it lands (the one call in `resize_frames`).
- Normalise: mean = std = 0.5, fused with the 1/255 rescale as transformers fuses it: `(x - 127.5) / 127.5`.
- Pairs: an odd count repeats the last frame after normalising (the processor's `patchify`), and the pair's time is
  the mean of its two frames' times (`Qwen3VLProcessor._calculate_timestamps`), frame times being index / fps.
- Sampling (`processor_indices`): the processor's own, `fps` 2 frames per second clamped to [4, 768] frames and
  to the video's frame count, spread with `linspace(0, n - 1).round()`. liteframe's samplers give times on the same
  index / fps grid, so either sample yields the processor's timestamps.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

from liteframe.errors import InputError
from liteframe.video.preprocess import check_frames

PATCH = 16
MERGE = 2
FRAMES_PER_STEP = 2  # temporal patch: one ViT grid step is a frame pair
FACTOR = PATCH * MERGE  # frame sides are multiples of 32
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
RESCALE = 1 / 255
_CHUNK = 32  # frames resized at once: bounds memory for long 720p videos


@dataclass(frozen=True)
class VideoBudget:
    """The pixel budget of a whole video (`size.shortest_edge`, `size.longest_edge` of the video processor's
    config) and its sampling rate (`fps`, frames per second; `min_frames`, `max_frames`)."""

    min_pixels: int = 4096
    max_pixels: int = 25165824
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 768

    @classmethod
    def from_folder(cls, folder: str | Path) -> VideoBudget:
        """The budget in `folder/video_preprocessor_config.json`, or one line naming the file and what is wrong.
        Patch, merge and temporal sizes must be Qwen3-VL's (16, 2, 2): liteframe's patch layout assumes them."""
        path = Path(folder) / "video_preprocessor_config.json"
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: cannot read the video processor's config ({err})") from None
        size = config.get("size") or {}
        layout = (config.get("patch_size", PATCH), config.get("merge_size", MERGE),
                  config.get("temporal_patch_size", FRAMES_PER_STEP))
        if layout != (PATCH, MERGE, FRAMES_PER_STEP):
            raise InputError(f"{path}: patch, merge and temporal patch sizes {layout}; liteframe supports only "
                             f"Qwen3-VL's {(PATCH, MERGE, FRAMES_PER_STEP)}")
        if any(list(config.get(key, default)) != list(default)
               for key, default in (("image_mean", IMAGE_MEAN), ("image_std", IMAGE_STD))):
            raise InputError(f"{path}: image_mean/image_std other than 0.5 are not supported")
        try:
            budget = cls(int(size["shortest_edge"]), int(size["longest_edge"]), float(config.get("fps", 2.0)),
                         int(config.get("min_frames", 4)), int(config.get("max_frames", 768)))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: `size` needs integer shortest_edge and longest_edge, got {size!r}") from None
        if not 0 < budget.min_pixels <= budget.max_pixels:
            raise InputError(f"{path}: pixel budget [{budget.min_pixels}, {budget.max_pixels}] is empty")
        return budget


def frame_size(frames: int, height: int, width: int, budget: VideoBudget = VideoBudget()) -> tuple[int, int]:
    """`(H', W')` the processor resizes `frames` frames of `height x width` to: transformers' Qwen3-VL
    `smart_resize` over the whole video (see the module docstring); one line for what it refuses."""
    if frames < FRAMES_PER_STEP:
        raise InputError(f"{frames} frame(s): Qwen3-VL's video processor needs at least {FRAMES_PER_STEP}")
    try:
        return smart_resize(frames, height, width, temporal_factor=FRAMES_PER_STEP, factor=FACTOR,
                            min_pixels=budget.min_pixels, max_pixels=budget.max_pixels)
    except (ValueError, ZeroDivisionError) as err:
        raise InputError(f"frame size {height}x{width}: {err}") from None


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 `(N, 3, H, W)` -> uint8 `(N, 3, H', W')`, bicubic with antialiasing, rounded. STAND-IN for
    torchvision's uint8 resize (see the module docstring), run `_CHUNK` frames at a time."""
    out = torch.empty(len(frames), 3, *size, dtype=torch.uint8, device=frames.device)
    for start in range(0, len(frames), _CHUNK):
        x = F.interpolate(frames[start:start + _CHUNK].float(), size=size, mode="bicubic", align_corners=False,
                          antialias=True)
        out[start:start + _CHUNK] = x.clamp_(0, 255).round_()
    return out


def normalize(frames: torch.Tensor) -> torch.Tensor:
    """uint8 `(N, 3, H, W)` -> float32, rescale and normalise fused as the processor fuses them."""
    mean = torch.tensor(IMAGE_MEAN, device=frames.device) * (1.0 / RESCALE)
    std = torch.tensor(IMAGE_STD, device=frames.device) * (1.0 / RESCALE)
    return (frames.float() - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def preprocess(frames: torch.Tensor, total_frames: int, budget: VideoBudget = VideoBudget(),
               device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 `(N, 3, H, W)`, a chunk of a video of `total_frames` frames -> float32 `(N + N % 2, 3, H', W')` with
    `(H', W') = frame_size(total_frames, H, W)`; an odd count repeats the last frame (the processor's `patchify`:
    give chunks of whole pairs, so only the last chunk can be odd)."""
    check_frames(frames, "qwen3 preprocess")
    size = frame_size(total_frames, *frames.shape[-2:], budget)
    x = normalize(resize_frames(frames.to(device) if device is not None else frames, size))
    return torch.cat([x, x[-1:]]) if len(x) % FRAMES_PER_STEP else x


def patchify(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """`(2T, 3, H, W)` -> pixel rows `(T*h*w, 3*2*16*16)` ordered (step, merged row, merged column, 2x2 group) and
    the grid `(T, h, w)` in patches: the processor's layout, which the ViT and its mergers assume."""
    n, c, height, width = x.shape
    t, h, w = n // FRAMES_PER_STEP, height // PATCH, width // PATCH
    x = x.view(t, FRAMES_PER_STEP, c, h // MERGE, MERGE, PATCH, w // MERGE, MERGE, PATCH)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(t * h * w, c * FRAMES_PER_STEP * PATCH * PATCH), (t, h, w)


def processor_indices(total_frames: int, video_fps: float, budget: VideoBudget = VideoBudget()) -> np.ndarray:
    """`(n,)` the frame indices the processor samples by default: `budget.fps` frames per second, clamped to
    `[min_frames, max_frames]` and to the video's frames, spread evenly and rounded."""
    n = int(total_frames / video_fps * budget.fps)
    n = min(max(n, budget.min_frames), budget.max_frames, total_frames)
    return np.linspace(0, total_frames - 1, n).round().astype(int)


def pair_times(timestamps) -> list[float]:
    """Frame times (s) -> one time per frame pair, the mean of the pair's first and last frame (an odd count pairs
    the last frame with itself): the time the processor prints before each pair."""
    times = list(timestamps) + list(timestamps[-1:]) * (len(timestamps) % FRAMES_PER_STEP)
    return [(times[i] + times[i + FRAMES_PER_STEP - 1]) / 2 for i in range(0, len(times), FRAMES_PER_STEP)]
