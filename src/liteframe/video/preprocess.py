"""InternVL's image preprocessing, batched on tensors: bicubic resize to size x size, scale to [0, 1], ImageNet
mean/std.

Three ways to resize (`RESIZERS`), measured against InternVL's reference (PIL bicubic of the RGB frame) in
docs/results/frontend.md:
- `exact` (the default): the decoder converts each frame to RGB and resizes it in uint8 with torch's antialiased
  bicubic, PIL's kernel and rounding (`VideoReader.read(..., size=)`): within 2 levels of the reference, mean 0.00.
  `normalize` then only scales, in one fused operation on the device.
- `swscale`: the decoder resizes from YUV straight to size x size RGB in one swscale call: a little faster, about
  one level off the reference on average.
- `torch`: the decoder converts the whole frame to RGB and `preprocess` resizes it in float with torch's
  antialiased bicubic, which uses PIL's kernel (a = -0.5, widened when downscaling) without PIL's rounding between
  passes; values are clamped to [0, 255] after resizing as PIL's uint8 output is. Several times slower on a CPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZERS = ("exact", "swscale", "torch")
_CHUNK = 32  # frames converted to float at once: bounds memory for long 720p videos


def normalize(frames: torch.Tensor, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> contiguous `dtype` (N, 3, H, W) on `device` (default: the frames' device):
    (x / 255 - mean) / std as one fused multiply-add in place, after the uint8 copy to the device (4x less to move
    than floats) and one cast. (A multiply-add straight from uint8 takes torch's slower mixed-dtype path on CPU.)"""
    check_frames(frames)
    frames = frames.to(device if device is not None else frames.device, non_blocking=True)
    scale = torch.tensor([1 / (255 * s) for s in IMAGENET_STD], dtype=dtype, device=frames.device).view(1, 3, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)], dtype=dtype,
                         device=frames.device).view(1, 3, 1, 1)
    out = torch.empty(frames.shape, dtype=dtype, device=frames.device).copy_(frames)
    return torch.addcmul(shift, out, scale, out=out)


def preprocess(frames: torch.Tensor, size: int = 448, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 (N, 3, size, size) on `device` (default: the frames' device): the `torch`
    resize. Frames already size x size (resized by the decoder) are only normalised."""
    check_frames(frames)
    if frames.shape[-2:] == (size, size):
        return normalize(frames, device)
    device = torch.device(device) if device is not None else frames.device
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
    out = torch.empty(len(frames), 3, size, size, device=device)
    for start in range(0, len(frames), _CHUNK):
        x = frames[start:start + _CHUNK].to(device, non_blocking=True).float()
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        out[start:start + _CHUNK] = (x.clamp_(0, 255) - mean) / std
    return out


def check_frames(frames: torch.Tensor, what: str = "preprocess") -> None:
    """A ValueError naming `what` unless `frames` is uint8 (N, 3, H, W)."""
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"{what} expects uint8 frames (N, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RESIZERS", "normalize", "preprocess"]
