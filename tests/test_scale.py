"""`torchvision_bicubic` (the pixels of transformers' torchvision video processors, Qwen2-VL's included) against a
float64 reimplementation of the algorithm torchvision runs for uint8 on a CPU, on random and real frames."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from liteframe.video import open_video
from liteframe.video.scale import torchvision_bicubic
from videos import REAL_VIDEOS


def keys_cubic(x: float, a: float = -0.5) -> float:
    """Keys' cubic convolution kernel; a = -0.5 is PIL's and torch's antialiased bicubic."""
    x = abs(x)
    if x < 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, int]:
    """The resampling matrix of one axis, (n_out, n_in) int64 fixed-point weights, and their precision (bits):
    float64 weights of the kernel stretched by the downscale factor, normalised per output, rounded to int16."""
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    support = 2.0 * stretch
    taps = math.ceil(support) * 2 + 1
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = scale * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        hi = min(hi, lo + taps)
        row = np.array([keys_cubic((j - centre + 0.5) / stretch) for j in range(lo, hi)])
        if row.sum() != 0:
            w[i, lo:hi] = row / row.sum()
    bits = 0
    while bits < 22 and int(0.5 + w.max() * 2 ** (bits + 1)) < 2 ** 15:
        bits += 1
    v = w * 2 ** bits
    return np.trunc(v + np.where(v < 0, -0.5, 0.5)).astype(np.int64), bits


def resample(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """One pass over `axis` of uint8 x: integer sums, rounded by the half-step then shifted, clamped to uint8."""
    weights, bits = axis_weights(x.shape[axis], n_out)
    # float64 products and sums of these integers stay below 2^53: exact in any order, and BLAS makes 720p quick
    acc = (np.moveaxis(x, axis, -1).astype(np.float64) @ weights.T.astype(np.float64)).astype(np.int64)
    return np.moveaxis(np.clip((acc + (1 << (bits - 1))) >> bits, 0, 255).astype(np.uint8), -1, axis)


def reference(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, C, h, w): width first, then height, each pass skipped when its size holds."""
    x = frames.numpy()
    if x.shape[3] != size[1]:
        x = resample(x, size[1], axis=3)
    if x.shape[2] != size[0]:
        x = resample(x, size[0], axis=2)
    return torch.from_numpy(np.ascontiguousarray(x))


sides = st.integers(1, 72)
out_sides = st.integers(2, 72)  # torch's uint8 kernel fails an internal assert on a 1 x 1 output (torch 2.13)


@settings(max_examples=60)
@given(h=sides, w=sides, out_h=out_sides, out_w=out_sides, n=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_random_frames_equal_the_float64_reference(h, w, out_h, out_w, n, seed):
    frames = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, h, w), dtype=np.uint8))
    got = torchvision_bicubic(frames, (out_h, out_w))
    want = reference(frames, (out_h, out_w))
    assert got.dtype == torch.uint8 and got.shape == (n, 3, out_h, out_w)
    assert (got.int() - want.int()).abs().max() <= 1


@pytest.mark.parametrize("name, sizes", [
    ("bbb_short.mp4", [(168, 308), (196, 336), (84, 140)]),  # 176x320: Qwen-sized down- and upscales
    ("corrupted.mp4", [(588, 1036), (364, 644), (140, 252)]),  # 720p, the largest downscale
    ("video_90.mov", [(560, 308), (280, 168)]),  # portrait after rotation
])
def test_real_frames_equal_the_float64_reference(name, sizes):
    with open_video(REAL_VIDEOS / name) as r:
        frames = r.read([0.0, r.info.duration / 2][: 1 if r.info.width > 640 else 2]).data  # one 720p frame
    for size in sizes:
        got = torchvision_bicubic(frames, size)
        diff = (got.int() - reference(frames, size).int()).abs()
        assert diff.max() <= 1, (name, size)
        # the float path (resize in float, then round) is not this: it differs by a level or more somewhere
        floated = torch.nn.functional.interpolate(frames.float(), size=size, mode="bicubic", antialias=True)
        assert (floated.clamp(0, 255).round().int() - got.int()).abs().max() >= 1


def test_a_channels_last_frame_and_a_batch_give_the_same_pixels():
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 3, 50, 70), dtype=np.uint8))
    batch = torchvision_bicubic(frames, (28, 42))
    one = torch.cat([torchvision_bicubic(f[None].contiguous(memory_format=torch.channels_last), (28, 42))
                     for f in frames])
    assert torch.equal(batch, one)


def test_same_size_returns_the_frames_and_float_input_is_refused():
    frames = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    assert torchvision_bicubic(frames, (8, 8)) is frames
    with pytest.raises(ValueError, match="uint8 frames"):
        torchvision_bicubic(frames.float(), (4, 4))


def test_equals_torchvision_where_it_imports():
    """The processor's own resize, where torchvision can run beside this torch (it does not import here)."""
    F = pytest.importorskip("torchvision.transforms.v2.functional")
    frames = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 3, 176, 320), dtype=np.uint8))
    want = F.resize(frames, [168, 308], interpolation=F.InterpolationMode.BICUBIC, antialias=True)
    assert torch.equal(torchvision_bicubic(frames, (168, 308)), want)
