"""How Qwen3-VL's and Qwen3.5's frames are sized, as `AutoProcessor` gives them (`Qwen3VLVideoProcessor`,
transformers 5.25): `data_config` reads the checkpoint's video processor config (`liteframe.llm.processor`).

- Budget: `size` of the config, `shortest_edge`/`longest_edge` being the least and most pixels of the WHOLE video
  (frames x height x width, the frame count rounded up to pairs), not of one frame as in Qwen2.5-VL: the more
  frames, the smaller each (the released checkpoints give 4096 and 25165824; a folder without a config gets the
  class's defaults, 128 and 768 tokens' pixels). transformers' own Qwen3-VL `smart_resize` gives the size (factor
  `patch x merge` = 32). `cap_pixels_per_frame` (off unless the config turns it on; transformers 5.25 announces it
  as a future default) caps each frame at `max_video_tokens` tokens' pixels or its even share of the budget,
  floored at 1.05 x `shortest_edge`, in the processor's integer arithmetic. The frame count is the sampled count,
  before the last pair is padded.
- Pixels, mean and std: the generic `DataConfig`'s (torchvision's uint8 bicubic, then the fused rescale and
  normalise), with the config's `image_mean`/`image_std` (0.5 by default).
- Pairs: an odd count repeats the last frame after normalising (the processor's `patchify`), and a pair's time is
  the mean of its two frames' times (`Qwen3VLProcessor._calculate_timestamps`), frame times being index / fps:
  liteframe's samplers give times on the same grid, so a liteframe sample gets the processor's timestamps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

from liteframe.errors import InputError
from liteframe.llm.data import DataConfig
from liteframe.llm.processor import pixel_range, video_settings
from liteframe.llm.qwen3.vision import FACTOR, FRAMES_PER_STEP, MERGE, PATCH

MEAN = STD = (0.5, 0.5, 0.5)  # `Qwen3VLVideoProcessor`'s defaults (IMAGENET_STANDARD_MEAN and _STD)
# `Qwen3VLVideoProcessor`'s default `size` (shortest_edge, longest_edge) and `max_video_tokens`
MIN_PIXELS = 128 * FACTOR * FACTOR
MAX_PIXELS = 768 * FACTOR * FACTOR
MAX_VIDEO_TOKENS = 768


@dataclass(frozen=True)
class VideoBudget:
    """Qwen3-VL's size policy: `frames` frames of `height x width` resized by the processor's `smart_resize` so
    that the whole video holds between `min_pixels` and `max_pixels` pixels; `frame_cap` (the pixels of
    `max_video_tokens` tokens, where `cap_pixels_per_frame` is on) also caps each frame (see the module docstring)."""

    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    frame_cap: int | None = None
    fixed = False

    def __call__(self, frames: int, height: int, width: int) -> tuple[int, int]:
        """`(H', W')` the processor resizes `frames` frames of `height x width` to, or one line for what it
        refuses."""
        if frames < FRAMES_PER_STEP:
            raise InputError(f"{frames} frame(s): Qwen3-VL's video processor needs at least {FRAMES_PER_STEP}")
        most = self.max_pixels
        if self.frame_cap is not None:
            most = max(min(self.frame_cap, self.max_pixels // frames), int(self.min_pixels * 1.05)) * frames
        try:
            return smart_resize(frames, height, width, temporal_factor=FRAMES_PER_STEP, factor=FACTOR,
                                min_pixels=self.min_pixels, max_pixels=most)
        except (ValueError, ZeroDivisionError) as err:
            raise InputError(f"frame size {height}x{width}: {err}") from None

    def largest(self, frames: int) -> tuple[int, int]:
        """A square frame filling the budget of `frames` frames: the most tokens frames of ordinary shape give."""
        frames = max(frames, FRAMES_PER_STEP)
        most = self.max_pixels // (frames + frames % FRAMES_PER_STEP)
        if self.frame_cap is not None:
            most = min(most, max(self.frame_cap, int(self.min_pixels * 1.05)))
        side = math.isqrt(most)
        return self(frames, side, side)


def data_config(folder: str | Path | None = None, pixels: str = "processor") -> DataConfig:
    """The data config of the checkpoint in `folder`: what `AutoProcessor` gives for its video processor config
    (None or a folder without one: the processor's defaults). Only the processor's own budget applies (`pixels`)."""
    if pixels != "processor":
        raise InputError(f"pixels {pixels!r}: Qwen3-VL and Qwen3.5 size frames by their processor's whole-video "
                         "budget; only 'processor' applies")
    config, where = video_settings(folder, (PATCH, MERGE, FRAMES_PER_STEP), "Qwen3-VL")
    low, high = pixel_range(config.get("size") or {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}, where)
    cap = config.get("max_video_tokens", MAX_VIDEO_TOKENS) * FACTOR * FACTOR if config.get("cap_pixels_per_frame") \
        else None
    mean, std = tuple(config.get("image_mean", MEAN)), tuple(config.get("image_std", STD))
    return DataConfig(VideoBudget(low, high, cap), mean, std, FRAMES_PER_STEP)
