"""Preprocessing against PIL (what InternVL resizes with) and a float64 normalisation; load_video end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from liteframe.video import load_video, preprocess
from liteframe.video.preprocess import IMAGENET_MEAN, IMAGENET_STD, PAD_VALUE
from videos import REAL_VIDEOS


def smooth_frames(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, h, w) of low-frequency patterns (PIL rounds to uint8 between its two passes: noise would
    measure that rounding, not the filter)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    f = rng.uniform(1, 4, (n, 3, 2))
    phase = rng.uniform(0, 6.3, (n, 3, 1, 1))
    img = 127.5 + 100 * np.sin(2 * np.pi * (f[..., :1, None] * y + f[..., 1:, None] * x) + phase)
    return torch.from_numpy(img.round().astype(np.uint8))


def reference(frame: torch.Tensor, size: int) -> np.ndarray:
    """InternVL's path: PIL bicubic resize, /255, ImageNet mean/std, in float64. (3, H, W) -> (3, size, size)."""
    img = Image.fromarray(frame.permute(1, 2, 0).numpy()).resize((size, size), Image.BICUBIC)
    x = np.asarray(img, np.float64).transpose(2, 0, 1) / 255
    return (x - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]


@settings(max_examples=10, deadline=None)
@given(h=st.integers(20, 200), w=st.integers(20, 200), size=st.sampled_from([28, 56, 112]), seed=st.integers(0, 99))
def test_matches_pil_bicubic_reference(h, w, size, seed):
    frames = smooth_frames(2, h, w, seed)
    out = preprocess(frames, size)
    assert out.shape == (2, 3, size, size) and out.dtype == torch.float32
    for i in range(2):
        err = np.abs(out[i].double().numpy() - reference(frames[i], size))
        # PIL rounds to uint8 between passes: a level or two of 255, divided by std ~0.225
        assert err.max() < 3 / 255 / 0.224 and err.mean() < 0.6 / 255 / 0.224


def test_constant_frame_is_exactly_normalised():
    frames = torch.full((3, 3, 17, 29), 200, dtype=torch.uint8)
    out = preprocess(frames, size=112).double()
    mean, std = (torch.tensor(v, dtype=torch.float64) for v in (IMAGENET_MEAN, IMAGENET_STD))
    want = (200 / 255 - mean) / std
    torch.testing.assert_close(out, want.view(1, 3, 1, 1).expand_as(out), atol=1e-5, rtol=0)


def test_batched_in_chunks_equals_frame_by_frame():
    frames = smooth_frames(40, 30, 50)  # more than one chunk
    out = preprocess(frames, size=56)
    one_by_one = torch.cat([preprocess(f[None], size=56) for f in frames])
    torch.testing.assert_close(out, one_by_one)


def test_keep_aspect_pads_with_the_mean_colour():
    frames = torch.full((1, 3, 20, 80), 255, dtype=torch.uint8)  # wide white frame
    out = preprocess(frames, size=64, keep_aspect=True)[0]
    pad = (torch.tensor(PAD_VALUE) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert pad.abs().max() < 0.01  # the pad normalises to ~0
    torch.testing.assert_close(out[:, :20], pad.view(3, 1, 1).expand(3, 20, 64), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, -20:], pad.view(3, 1, 1).expand(3, 20, 64), atol=1e-5, rtol=0)
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 26:38], white.view(3, 1, 1).expand(3, 12, 64), atol=1e-5, rtol=0)
    square = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(preprocess(square, 64, keep_aspect=True), preprocess(square, 64))


def test_rejects_float_input():
    with pytest.raises(ValueError, match="uint8 frames"):
        preprocess(torch.rand(1, 3, 8, 8))


def test_load_video_end_to_end():
    pixels, sample = load_video(REAL_VIDEOS / "bbb_short.mp4", num_frames=8, size=56)
    assert pixels.shape == (8, 3, 56, 56) and pixels.dtype == torch.float32
    np.testing.assert_array_equal(sample.indices, [25, 50, 75, 100, 150, 175, 200, 225])  # 2 clips at 1 fps
    assert -2.2 < pixels.min() < pixels.max() < 2.7 and not sample.repeated
    uniform, s2 = load_video(REAL_VIDEOS / "bbb_short.mp4", num_frames=4, strategy="uniform", size=56)
    assert uniform.shape == (4, 3, 56, 56) and list(s2.indices) == [31, 93, 156, 218]
