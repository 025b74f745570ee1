"""Synthetic videos written with PyAV, for tests and benchmarks.

`make_video`: frame i is flat grey in two halves, the left half coding i % 16, the right half i // 16 (16 levels
each), which survives lossy H.264 at any size, so `frame_index(rgb)` recovers i from a decoded frame; any container,
codec, frame rate (also variable), rotation, with or without audio. `solid_video`: one colour throughout (LMA's
colour-naming task). `synthetic_video`: drifting colour gradients over rolling noise, something to decode when a
benchmark is given no video. `drifting_squares`: random colour squares drifting sideways (distillation's clips).
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np


def frame_image(i: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 coding the frame index i (< 256); a white block marks the top-left corner (for rotation)."""
    img = np.empty((height, width, 3), np.uint8)
    img[:, : width // 2] = (i % 16) * 16 + 8
    img[:, width // 2:] = (i // 16) * 16 + 8
    img[: height // 4, : width // 8] = 255
    return img


def frame_index(rgb: np.ndarray) -> int:
    """(3, H, W) or (H, W, 3) decoded unrotated frame -> the index it codes."""
    if rgb.shape[0] == 3:
        rgb = rgb.transpose(1, 2, 0)
    h, w = rgb.shape[:2]
    lo = rgb[h // 2:, w // 8: w // 2].mean()
    hi = rgb[h // 2:, w // 2:].mean()
    return int(round((hi - 8) / 16)) * 16 + int(round((lo - 8) / 16))


def make_video(path: Path, num_frames: int = 24, fps: int = 8, width: int = 64, height: int = 48,
               codec: str = "libx264", gop: int = 8, bframes: int = 0, rotation: int = 0,
               pts: Sequence[float] | None = None, options: dict | None = None, audio: bool = False) -> Path:
    """Write a video; the container follows the suffix. `pts` (seconds) gives a variable frame rate; `rotation` is the
    clockwise display rotation stored as metadata; `options` go to the muxer."""
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = bframes
        if codec == "libx264":
            stream.codec_context.options = {"preset": "ultrafast" if not bframes else "fast", "crf": "18",
                                            "bf": str(bframes), "scenecut": "0"}
        if rotation:
            stream.set_display_rotation(-rotation)  # PyAV takes the counter-clockwise angle
        if pts is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        if audio:
            sound = out.add_stream("aac", rate=8000)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, width, height), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = round(pts[i] * 1000), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if audio:
            _write_tone(out, sound, num_frames / fps)
    return path


def make_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), "w") as out:
        _write_tone(out, out.add_stream("aac", rate=8000), seconds)
    return path


def _write_tone(out, stream, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    for start in range(0, samples.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024], format="fltp", layout="mono")
        frame.sample_rate = rate
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def solid_video(path: Path, rgb: tuple[int, int, int], frames: int = 8, fps: int = 4, width: int = 64,
                height: int = 48) -> Path:
    """An H.264 clip of one colour `rgb`."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = rgb
    return _write(path, [image] * frames, fps)


def synthetic_video(path: Path, seconds: int = 12, fps: int = 24, width: int = 480, height: int = 270) -> Path:
    """An H.264 clip of drifting colour gradients over rolling noise (288 frames at the defaults)."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(0).integers(0, 32, (height, width, 3))
    images = (((np.stack([(x + 3 * i) % 224, (y + 2 * i) % 224, (x + y + i) % 224], axis=-1)
                + np.roll(noise, i, axis=1)).astype(np.uint8)) for i in range(seconds * fps))
    return _write(path, images, fps)


def _write(path: Path, images, fps: int) -> Path:
    """(H, W, 3) uint8 images -> an H.264 file (yuv420p, ultrafast)."""
    with av.open(str(path), "w") as out:
        stream = None
        for image in images:
            if stream is None:
                stream = out.add_stream("libx264", rate=fps)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.codec_context.options = {"preset": "ultrafast"}
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


def drifting_squares(path: Path, seed: int, frames: int = 48, size: int = 112, cell: int = 8, fps: int = 16,
                    step: int = 3) -> str:
    """An MPEG-4 clip of `size` px squares: random colour squares of `cell` px (by `seed`) drifting `step` px sideways
    per frame, so frames differ and a student's temporal mixing has something to learn."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size // cell, size // cell, 3), dtype=np.uint8).repeat(cell, 0).repeat(cell, 1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.roll(base, step * i, axis=1), format="rgb24")))
        out.mux(stream.encode())
    return str(path)
