"""`liteframe bench decode`: sampling a frame budget from a long H.264 video against decoding every frame of it.

The video is synthetic (1280x720, 30 fps, a keyframe every 2 s by default, 3 B-frames between references), generated
once with x264 ultrafast and cached. Its content is either `noise` (a drifting noise texture: keyframes are about
23x the size of other frames) or `natural` (moving gradients and shapes with mild noise, closer to camera video).
Every strategy returns the same decoded RGB frames a model would get. Two baselines decode every frame with the same
PyAV decoder (thread_type AUTO): one converts every frame to RGB, as a naive loader does (one reused converter, so
the baseline is not slowed by PyAV building a scaler per frame); the other converts only the sampled frames, so its
ratio measures decoding work alone. decord and torchcodec do not install here and are reported as skipped.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from av.video.reformatter import VideoReformatter

from liteframe.tables import print_rows
from liteframe.video.decode import open_video
from liteframe.video.sampling import sample_frames

WIDTH, HEIGHT, FPS = 1280, 720, 30
CONTENTS = ("noise", "natural")


def long_video(minutes: float, keyframe_s: int = 2, cache_dir: str | os.PathLike | None = None,
               content: str = "noise") -> Path:
    """The cached benchmark video of `minutes` minutes with a keyframe every `keyframe_s` seconds, generated on
    first use (written atomically)."""
    if content not in CONTENTS:
        raise ValueError(f"unknown video content {content!r}; choose from {', '.join(CONTENTS)}")
    cache = Path(cache_dir or os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "liteframe" / "bench"
    suffix = "" if content == "noise" else f"_{content}"  # the noise file keeps the name it was cached under
    path = cache / f"decode_{minutes:g}min_{WIDTH}x{HEIGHT}_{FPS}fps_key{keyframe_s}s{suffix}.mp4"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache, suffix=".mp4", delete=False) as tmp:
            part = Path(tmp.name)
        try:
            _encode(part, round(minutes * 60 * FPS), keyframe_s * FPS, _natural_planes if content == "natural"
                    else _noise_planes)
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)
    return path


def _noise_planes(num_frames: int):
    """Luma: a noise texture drifting diagonally plus a brightness ramp over time; chroma: flat. Planes are sliced
    from precomputed arrays so generation costs little beside the encoder. Yields (H * 3/2, W) yuv420p planes."""
    rng = np.random.default_rng(0)
    texture = rng.integers(16, 235, (2 * HEIGHT, 2 * WIDTH), dtype=np.uint8)
    texture = ((texture.astype(np.uint16) + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) // 3).astype(np.uint8)
    chroma = np.full((HEIGHT // 2, WIDTH), 128, np.uint8)
    for i in range(num_frames):
        y, x = (3 * i) % HEIGHT, (5 * i) % WIDTH
        yield np.concatenate([texture[y:y + HEIGHT, x:x + WIDTH] + np.uint8((i // FPS) % 32), chroma])


def _natural_planes(num_frames: int):
    """A panning smooth colour field with fine texture, three discs crossing it, mild sensor-like noise, and a cut to
    a new scene every 20 s; yields (H * 3/2, W) yuv420p planes. Keyframes come out several times, not 23x, the size
    of other frames, as in camera video."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:2 * HEIGHT, 0:2 * WIDTH].astype(np.float32)
    fine = rng.normal(0, 12, (2 * HEIGHT, 2 * WIDTH)).astype(np.float32)
    fine = ((fine + np.roll(fine, 1, 0) + np.roll(fine, 1, 1) + np.roll(fine, (1, 1), (0, 1))) / 2).astype(np.int16)
    noise = rng.normal(0, 9, (8, HEIGHT, WIDTH)).astype(np.float32)
    noise = (noise + np.roll(noise, 1, 1) + np.roll(noise, 1, 2) + np.roll(noise, (1, 1), (1, 2))) / 2
    noise = noise.astype(np.int16)
    r = 60
    disc = np.add.outer(np.arange(-r, r) ** 2, np.arange(-r, r) ** 2) < r * r
    for i in range(num_frames):
        t = i % (20 * FPS)
        if t == 0:  # a new scene: different field, colours and disc paths
            a, b, c = rng.uniform(20, 90, 3)
            field = 120 + 50 * np.sin(xx / (4 * a)) * np.cos(yy / (3 * b)) + 30 * np.sin((xx + yy) / (5 * c))
            luma_field = field.astype(np.int16)
            uv_field = np.stack([128 + 25 * np.sin(xx[::2, ::2] / (3 * b)),
                                 128 + 25 * np.cos(yy[::2, ::2] / (3 * a))]).astype(np.uint8)
            paths = rng.uniform(-1, 1, (3, 4)) * [WIDTH / 2 - r, HEIGHT / 2 - r, 4, 3] + [WIDTH / 2, HEIGHT / 2, 0, 0]
            shades = rng.integers(40, 215, 3)
        y, x = (i // 2) % HEIGHT, i % WIDTH
        fy, fx = i % HEIGHT, (3 * i) % WIDTH  # the texture moves against the field: parallax, like a real scene
        luma = luma_field[y:y + HEIGHT, x:x + WIDTH] + fine[fy:fy + HEIGHT, fx:fx + WIDTH] + noise[i % 8]
        for (cx, cy, vx, vy), shade in zip(paths, shades):
            px, py = int((cx + vx * t) % (WIDTH - 2 * r)), int((cy + vy * t) % (HEIGHT - 2 * r))
            luma[py:py + 2 * r, px:px + 2 * r][disc] = shade
        uv = uv_field[:, y // 2:y // 2 + HEIGHT // 2, x // 2:x // 2 + WIDTH // 2]
        yield np.concatenate([np.clip(luma, 16, 235).astype(np.uint8).reshape(-1), uv.reshape(-1)]).reshape(
            HEIGHT * 3 // 2, WIDTH)


def _encode(path: Path, num_frames: int, keyint: int, planes) -> None:
    """Encode `planes(num_frames)` (yuv420p arrays) with x264 ultrafast, a keyframe every `keyint` frames."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = keyint
        # ultrafast, but with the 3 B-frames between references that most distributed H.264 has
        stream.codec_context.options = {"preset": "ultrafast", "crf": "28", "x264-params": (
            f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=3:b-adapt=0:b-pyramid=none")}
        stream.thread_type = "AUTO"
        for i, plane in enumerate(planes(num_frames)):
            frame = av.VideoFrame.from_ndarray(plane, format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def _full_decode(path: Path, indices: np.ndarray, convert_all: bool) -> None:
    """Decode every frame front to back (PyAV, thread_type AUTO) and keep the sampled ones in one (N, H, W, 3) array
    as the sparse path does; `convert_all` converts every frame to RGB on the way, as a naive loader does."""
    out = np.empty((len(indices), HEIGHT, WIDTH, 3), np.uint8)
    rows = {}
    for row, index in enumerate(indices.tolist()):
        rows.setdefault(index, []).append(row)
    rgb = VideoReformatter()  # the sparse path's converter, so both sides convert a frame at the same cost
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(c.decode(stream)):
            if convert_all or index in rows:
                array = rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()
                if index in rows:
                    out[rows[index]] = array


FULL_RGB, FULL_DECODE = "decode every frame, RGB every frame", "decode every frame, RGB sampled only"


def run(minutes: float = 10.0, num_frames: int = 256, keyframe_s: int = 2, repeats: int = 2,
                     cache_dir: str | None = None, as_json: bool = False, content: str = "noise") -> list[dict]:
    """Time each sampling strategy's sparse read and two full decodes of the same video, interleaved over `repeats`
    rounds (best of each: the machine may be shared); print and return the rows. `speedup` is against the full
    decode that converts every frame; `speedup (decode)` against the one that converts only the sampled frames."""
    start = time.perf_counter()
    path = long_video(minutes, keyframe_s, cache_dir, content)
    print(f"video: {path} ({path.stat().st_size / 2**20:.0f} MiB, ready in {time.perf_counter() - start:.0f} s)",
          file=sys.stderr)
    with open_video(path) as reader:
        info = reader.info
        samples = {s: sample_frames(info, num_frames, s) for s in ("uniform", "clips", "fps")}

    def sparse(sample):
        with open_video(path) as reader:  # a fresh open each time: the cost a data loader pays per video
            reader.read(sample.timestamps)

    subjects = {f"liteframe sparse ({s})": (len(sample), lambda sample=sample: sparse(sample))
                for s, sample in samples.items()}
    for name, convert_all in ((FULL_RGB, True), (FULL_DECODE, False)):
        subjects[name] = (num_frames, lambda c=convert_all: _full_decode(path, samples["clips"].indices, c))
    best = dict.fromkeys(subjects, float("inf"))
    for _ in range(repeats):
        for name, (_, run) in subjects.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    rows = [{"method": name, "frames": frames, "seconds": best[name], "frames/s": frames / best[name],
             "speedup": best[FULL_RGB] / best[name], "speedup (decode)": best[FULL_DECODE] / best[name]}
            for name, (frames, _) in subjects.items()]
    for row in rows[-2:]:
        row["decoded/s"] = info.num_frames / row["seconds"]
    skipped = [name for name in ("decord", "torchcodec") if importlib.util.find_spec(name) is None]
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}", file=sys.stderr)
    print_rows(rows, as_json, ["method", "frames", "seconds", "frames/s", "speedup", "speedup (decode)", "decoded/s"])
    return rows


__all__ = ["CONTENTS", "long_video", "run"]
