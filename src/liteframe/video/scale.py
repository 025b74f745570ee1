"""Decoded frames -> RGB pixels: the conversion from the decoder's YUV, the scalers that resize as frames are
decoded (`SCALERS`), and the display rotation.

Scalers, measured against PIL bicubic of the RGB frame in docs/results/frontend.md:
- "exact": swscale converts to RGB at the stored size (the conversion the reference resizes), then torch's uint8
  antialiased bicubic, PIL's kernel with fixed-point rounding between its two passes: within
  2 levels of the reference. No float frame is made.
- "swscale": one swscale call, bicubic with full chroma interpolation, from YUV straight to planar RGB (gbrp) at
  the output size (channels-first with no transpose); resizing before the colour conversion and swscale's
  B=0, C=0.6 kernel put it about a level off the reference on average (tens of levels at saturated edges).
"""
from __future__ import annotations

from contextlib import contextmanager

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.video.reformatter import Interpolation, VideoReformatter

SCALERS = ("exact", "swscale")
_SCALE = (Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
          | Interpolation.FULL_CHR_H_INP)
_GBRP_TO_RGB = (1, 2, 0)  # the channel each gbrp plane (G, B, R) goes to


class Converter:
    """Decoded frames -> RGB, for one thread. It keeps its two swscale contexts between frames:
    `frame.to_ndarray(format=...)` builds a new scaler per frame, which cost more than the conversion itself. Each
    call converts on one thread: on a busy machine scaler threads only add overhead."""

    def __init__(self):
        self._rgb = VideoReformatter()
        self._scale = VideoReformatter()

    def rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """A decoded frame -> uint8 (height, width, 3) RGB at its stored size."""
        return self._rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()

    def convert(self, frame: av.VideoFrame, out: np.ndarray, scaler: str | None) -> None:
        """A decoded frame -> RGB into `out`: uint8 (height, width, 3) at the stored size (`scaler` None), or
        (3, height, width) resized by `scaler` (`SCALERS`)."""
        if scaler is None:
            out[:] = self.rgb(frame)
            return
        height, width = out.shape[1:]
        if scaler == "exact":
            # channels-last uint8 is the layout torch's vectorised antialiased resize is written for
            rgb = torch.from_numpy(self.rgb(frame)).permute(2, 0, 1)[None]
            small = F.interpolate(rgb, size=(height, width), mode="bicubic", antialias=True)
            torch.from_numpy(out).copy_(small[0])
            return
        planar = self._scale.reformat(frame, width, height, "gbrp", interpolation=_SCALE, threads=1)
        for channel, plane in zip(_GBRP_TO_RGB, planar.planes):
            out[channel] = np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)[:, :width]


def upright(frames: torch.Tensor, rotation: int) -> torch.Tensor:
    """(N, C, H, W) as stored -> as displayed: turned `rotation` degrees clockwise (0, 90, 180, 270)."""
    return torch.rot90(frames, k=-rotation // 90, dims=(2, 3)) if rotation else frames  # negative k: clockwise


@contextmanager
def one_torch_thread():
    """torch on one thread in this thread while frames are resized: a 448 px uint8 resize takes 1.5 ms on one
    thread and 4-5x longer on two on a busy machine, whose cores the decoder's own threads (and, beside a stream,
    the encoder) keep busy anyway. With OpenMP, torch's thread count is per calling thread, so a stream's decoding
    thread leaves the caller's encoder its threads. A read sets it before starting its own threads and each of them
    sets it again: whatever order they finish in, the count a new thread inherits is the caller's again at the end."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["SCALERS", "Converter", "one_torch_thread", "upright"]
