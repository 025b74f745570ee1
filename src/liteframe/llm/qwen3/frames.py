"""Frames as Qwen3-VL's and Qwen3.5's video processor (`Qwen3VLVideoProcessor`) prepares them, without torchvision.

- Budget: `size` of the checkpoint's `video_preprocessor_config.json`, `shortest_edge`/`longest_edge` being the
  least and most pixels of the WHOLE video (frames x height x width, the frame count rounded to pairs), not of one
  frame as in Qwen2.5-VL: the more frames, the smaller each. transformers' own `smart_resize` of the Qwen3-VL
  video processor gives the size (factor `patch x merge` = 32). The per-frame cap `cap_pixels_per_frame` is off:
  the released configs do not set it and transformers 5.25 leaves it off by default.
- Resize: torchvision's uint8 bicubic with antialiasing, as the processor runs it on the CPU
  (`liteframe.video.scale.torchvision_bicubic`, the same pixels).
- Normalise: mean = std = 0.5, fused with the 1/255 rescale as transformers fuses it: `(x - 127.5) / 127.5` in
  float32.
- Pairs: an odd count repeats the last frame after normalising (the processor's `patchify`), and the pair's time is
  the mean of its two frames' times (`Qwen3VLProcessor._calculate_timestamps`), frame times being index / fps:
  liteframe's samplers give times on the same grid, so a liteframe sample gets the processor's timestamps.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

from liteframe.errors import InputError
from liteframe.llm.data import DataConfig
from liteframe.llm.qwen3.vision import FACTOR, FRAMES_PER_STEP, MERGE, PATCH
from liteframe.video.preprocess import check_frames
from liteframe.video.scale import torchvision_bicubic

MEAN = STD = (0.5, 0.5, 0.5)
_CHUNK = 32  # frames resized at once: bounds memory for long 720p videos


@dataclass(frozen=True)
class VideoBudget:
    """Qwen3-VL's size policy: `frames` frames of `height x width` resized by the processor's `smart_resize` so that
    the whole video (its frame count rounded up to pairs) holds between `min_pixels` and `max_pixels` pixels
    (`size.shortest_edge`, `size.longest_edge` of `video_preprocessor_config.json`)."""

    min_pixels: int = 4096
    max_pixels: int = 25165824
    fixed = False

    @classmethod
    def from_folder(cls, folder: str | Path | None) -> VideoBudget:
        """The budget in `folder/video_preprocessor_config.json` (no folder, or none there: the processor's
        defaults), or one line naming the file and what is wrong. Patch, merge and temporal sizes and the mean and
        std must be Qwen3-VL's: liteframe's patch layout and normalisation assume them."""
        path = Path(folder or "") / "video_preprocessor_config.json"
        if folder is None or not path.is_file():
            return cls()
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: cannot read the video processor's config ({err})") from None
        layout = tuple(config.get(k, d) for k, d in (("patch_size", PATCH), ("merge_size", MERGE),
                                                      ("temporal_patch_size", FRAMES_PER_STEP)))
        if layout != (PATCH, MERGE, FRAMES_PER_STEP):
            raise InputError(f"{path}: patch, merge and temporal patch sizes {layout}; liteframe supports only "
                             f"Qwen3-VL's {(PATCH, MERGE, FRAMES_PER_STEP)}")
        if any(list(config.get(key, MEAN)) != list(MEAN) for key in ("image_mean", "image_std")):
            raise InputError(f"{path}: image_mean/image_std other than 0.5 are not supported")
        size = config.get("size") or {}
        try:
            budget = cls(int(size["shortest_edge"]), int(size["longest_edge"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: `size` needs integer shortest_edge and longest_edge, got {size!r}") from None
        if not 0 < budget.min_pixels <= budget.max_pixels:
            raise InputError(f"{path}: pixel budget [{budget.min_pixels}, {budget.max_pixels}] is empty")
        return budget

    def __call__(self, frames: int, height: int, width: int) -> tuple[int, int]:
        """`(H', W')` the processor resizes `frames` frames of `height x width` to, or one line for what it
        refuses."""
        if frames < FRAMES_PER_STEP:
            raise InputError(f"{frames} frame(s): Qwen3-VL's video processor needs at least {FRAMES_PER_STEP}")
        try:
            return smart_resize(frames, height, width, temporal_factor=FRAMES_PER_STEP, factor=FACTOR,
                                min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        except (ValueError, ZeroDivisionError) as err:
            raise InputError(f"frame size {height}x{width}: {err}") from None

    def largest(self, frames: int) -> tuple[int, int]:
        """A square frame filling the budget for `frames` frames: the most tokens frames of ordinary shape give."""
        side = math.isqrt(self.max_pixels // max(frames + frames % FRAMES_PER_STEP, FRAMES_PER_STEP))
        return self(max(frames, FRAMES_PER_STEP), side, side)


@dataclass(frozen=True)
class Qwen3Data(DataConfig):
    """The data config of Qwen3-VL and Qwen3.5: the video's `VideoBudget`, mean and std 0.5, frame pairs, and the
    processor's pixels (torchvision's uint8 resize, then the fused rescale and normalise in float32)."""

    size: VideoBudget = field(default_factory=VideoBudget)
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    frames_per_step: int = FRAMES_PER_STEP

    def __call__(self, frames: torch.Tensor, device: torch.device | str | None = None,
                 total: int | None = None) -> torch.Tensor:
        """uint8 `(N, 3, H, W)`, a chunk of a video of `total` sampled frames (None: N) -> float32
        `(N + N % 2, 3, H', W')` on `device`, `(H', W') = frame_size(total, (H, W))`: resized in uint8 where the
        frames are (on the CPU they were decoded on, as the processor runs), then `(x - 127.5) / 127.5`; an odd
        count repeats the last frame (give chunks of whole pairs, so that only the last chunk can be odd)."""
        check_frames(frames, "the frame transform")
        device = torch.device(device) if device is not None else frames.device
        height, width = self.frame_size(total or len(frames), tuple(frames.shape[-2:]))
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1) * 255.0
        out = torch.empty(len(frames) + self.padding(len(frames)), 3, height, width, device=device)
        for start in range(0, len(frames), _CHUNK):
            x = torchvision_bicubic(frames[start:start + _CHUNK], (height, width))
            out[start:start + len(x)] = x.to(device, non_blocking=True).float().sub_(mean).div_(std)
        out[len(frames):] = out[len(frames) - 1]
        return out
