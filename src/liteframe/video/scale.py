"""Decoded frames -> RGB pixels: the conversion from the decoder's YUV, the scalers that resize as frames are
decoded (`SCALERS`), the display rotation, and the resize transformers' torchvision video processors apply
(`torchvision_bicubic`).

Scalers, measured against PIL bicubic of the RGB frame in docs/results/frontend.md:
- "exact": swscale converts to RGB at the stored size (the conversion the reference resizes), then torch's uint8
  antialiased bicubic (`torchvision_bicubic`), PIL's kernel with fixed-point rounding between its two passes: within
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

    def rgb(self, frame: av.VideoFrame, width: int | None = None, height: int | None = None) -> np.ndarray:
        """A decoded frame -> uint8 (height, width, 3) RGB, at its stored size unless given one."""
        return self._rgb.reformat(frame, width, height, format="rgb24", threads=1).to_ndarray()

    def convert(self, frame: av.VideoFrame, out: np.ndarray, scaler: str | None) -> None:
        """A decoded frame -> RGB into `out`: uint8 (height, width, 3) at the stored size (`scaler` None), or
        (3, height, width) resized by `scaler` (`SCALERS`)."""
        if scaler is None:
            out[:] = self.rgb(frame)
            return
        height, width = out.shape[1:]
        if scaler == "exact":
            # channels-last uint8 is the layout torch's vectorised antialiased resize is written for
            small = torchvision_bicubic(torch.from_numpy(self.rgb(frame)).permute(2, 0, 1)[None], (height, width))
            torch.from_numpy(out).copy_(small[0])
            return
        planar = self._scale.reformat(frame, width, height, "gbrp", interpolation=_SCALE, threads=1)
        for channel, plane in zip(_GBRP_TO_RGB, planar.planes):
            out[channel] = np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)[:, :width]


def torchvision_bicubic(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 (N, 3, h, w): the pixels of torchvision's
    `transforms.v2.functional.resize(frames, [h, w], InterpolationMode.BICUBIC, antialias=True)`, which transformers'
    torchvision video processors (`Qwen2VLVideoProcessor`, via `TorchvisionBackend.resize`) apply to uint8 frames.

    What torchvision does (`resize_image` in transforms/v2/functional/_geometry.py): on a CPU tensor,
    `_do_native_uint8_resize_on_cpu(BICUBIC)` is True on every CPU (the AVX2/AVX512 test applies to bilinear
    only), so uint8 goes uncast to `F.interpolate(mode="bicubic", align_corners=False, antialias=True)`; a 5-D video
    is reshaped to (-1, C, H, W) and a size equal to the input's returns the input. PyTorch's uint8 antialiased
    kernel (`upsample_avx_bilinear_bicubic_uint8`, from Pillow-SIMD, on AVX2 builds for <= 4 channels; otherwise
    `separable_upsample_generic_Nd_kernel_impl` with `basic_loop_aa_horizontal/vertical<uint8_t>`: the same
    arithmetic) resizes one axis at a time, width first into a uint8 buffer, then height; an axis whose size does
    not change is skipped. Per axis, with scale = in / out: output i has centre c = scale (i + 0.5), support
    s = 2 max(scale, 1), input taps j in [int(c - s + 0.5), int(c + s + 0.5)) clipped to the image, weights
    k((j - c + 0.5) / max(scale, 1)) with Keys' cubic k at a = -0.5 (PIL's), normalised to sum 1 in float64, then
    scaled by 2^p and rounded half away from zero to int16, p the first of 0..21 at which round(max weight
    2^(p+1)) >= 2^15 (else 22): as many fraction bits as keep the largest weight of the axis within int16. Each output
    is (sum of pixel x weight + 2^(p-1)) >> p (arithmetic shift), clamped to [0, 255]. (Read in torchvision's source
    at 00bf6d4 and PyTorch's aten/src/ATen/native/cpu/UpSampleKernel.cpp and UpSampleKernelAVXAntialias.h.)
    On a CUDA tensor torchvision casts to float32, interpolates, clamps to [0, 255], rounds (half to even) and casts
    back: done here too. Tested against a float64 reimplementation of the above (tests/test_scale.py)."""
    if frames.dtype != torch.uint8 or frames.dim() != 4:
        raise ValueError(f"torchvision_bicubic expects uint8 frames (N, C, H, W), got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    if frames.device.type == "cpu":
        return F.interpolate(frames, size=size, mode="bicubic", align_corners=False, antialias=True)
    out = F.interpolate(frames.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp_(0, 255).round_().to(torch.uint8)


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


__all__ = ["SCALERS", "Converter", "one_torch_thread", "torchvision_bicubic", "upright"]
