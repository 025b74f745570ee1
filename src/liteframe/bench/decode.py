"""`liteframe bench decode`: sampling a frame budget from a long H.264 video against decoding every frame of it.

The video is synthetic (a drifting noise texture, 1280x720, 30 fps, a keyframe every 2 s by default, 3 B-frames
between references), generated once with x264 ultrafast and cached. Every strategy returns the same decoded RGB
frames a model would get; the full-decode baseline decodes every frame and keeps only the sampled ones, so the ratio
measures decoding work. decord and torchcodec do not install here and are reported as skipped.
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

from liteframe.bench.report import print_rows
from liteframe.video.decode import open_video
from liteframe.video.sampling import sample_frames

WIDTH, HEIGHT, FPS = 1280, 720, 30


def long_video(minutes: float, keyframe_s: int = 2, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached benchmark video of `minutes` minutes with a keyframe every `keyframe_s` seconds, generated on
    first use (written atomically)."""
    cache = Path(cache_dir or os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "liteframe" / "bench"
    path = cache / f"decode_{minutes:g}min_{WIDTH}x{HEIGHT}_{FPS}fps_key{keyframe_s}s.mp4"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache, suffix=".mp4", delete=False) as tmp:
            part = Path(tmp.name)
        try:
            _encode(part, round(minutes * 60 * FPS), keyframe_s * FPS)
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)
    return path


def _encode(path: Path, num_frames: int, keyint: int) -> None:
    """Luma: a noise texture drifting diagonally plus a brightness ramp over time; chroma: flat. Planes are sliced
    from precomputed arrays so generation costs little beside the encoder."""
    rng = np.random.default_rng(0)
    texture = rng.integers(16, 235, (2 * HEIGHT, 2 * WIDTH), dtype=np.uint8)
    texture = ((texture.astype(np.uint16) + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) // 3).astype(np.uint8)
    chroma = np.full((HEIGHT // 2, WIDTH), 128, np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = keyint
        # ultrafast, but with the 3 B-frames between references that most distributed H.264 has
        stream.codec_context.options = {"preset": "ultrafast", "crf": "28", "x264-params": (
            f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=3:b-adapt=0:b-pyramid=none")}
        stream.thread_type = "AUTO"
        for i in range(num_frames):
            y, x = (3 * i) % HEIGHT, (5 * i) % WIDTH
            luma = texture[y:y + HEIGHT, x:x + WIDTH] + np.uint8((i // FPS) % 32)
            frame = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]), format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def _full_decode(path: Path, indices: np.ndarray) -> None:
    """Decode every frame front to back (threaded), keeping the sampled ones in one (N, H, W, 3) array as the sparse
    path does."""
    out = np.empty((len(indices), HEIGHT, WIDTH, 3), np.uint8)
    rows = {}
    for row, index in enumerate(indices.tolist()):
        rows.setdefault(index, []).append(row)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(c.decode(stream)):
            if index in rows:
                out[rows[index]] = frame.to_ndarray(format="rgb24")


def run_decode_bench(minutes: float = 10.0, num_frames: int = 256, keyframe_s: int = 2, repeats: int = 2,
                     cache_dir: str | None = None, as_json: bool = False) -> list[dict]:
    """Time each sampling strategy's sparse read and a full decode of the same video, interleaved over `repeats`
    rounds (best of each: the machine may be shared); print and return the rows."""
    start = time.perf_counter()
    path = long_video(minutes, keyframe_s, cache_dir)
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
    subjects["decode every frame"] = (num_frames, lambda: _full_decode(path, samples["clips"].indices))
    best = dict.fromkeys(subjects, float("inf"))
    for _ in range(repeats):
        for name, (_, run) in subjects.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    full = best["decode every frame"]
    rows = [{"method": name, "frames": frames, "seconds": best[name], "frames/s": frames / best[name],
             "speedup": full / best[name]} for name, (frames, _) in subjects.items()]
    rows[-1]["decoded/s"] = info.num_frames / full
    skipped = [name for name in ("decord", "torchcodec") if importlib.util.find_spec(name) is None]
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}", file=sys.stderr)
    print_rows(rows, as_json, ["method", "frames", "seconds", "frames/s", "speedup", "decoded/s"])
    return rows


__all__ = ["long_video", "run_decode_bench"]
