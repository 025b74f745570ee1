"""`liteframe bench decode`: sampling a frame budget from a long H.264 video against decoding every frame of it and
against decord; `--frontend`: `load_video` of a short clip against a plain decode of every frame.

The video is synthetic (1280x720, 30 fps, a keyframe every 2 s by default, 3 B-frames between references), generated
once with x264 ultrafast and cached. Its content is either `noise` (a drifting noise texture: keyframes are about
23x the size of other frames) or `natural` (moving gradients and shapes with mild noise, closer to camera video).
Every strategy returns the same decoded RGB frames a model would get. Two baselines decode every frame with the same
PyAV decoder (thread_type AUTO): one converts every frame to RGB, as a naive loader does (one reused converter, so
the baseline is not slowed by PyAV building a scaler per frame); the other converts only the sampled frames, so its
ratio measures decoding work alone. decord (the optional `[bench]` extra) reads the same frame indices with
`get_batch`; a row notes it when it is not installed. Every sampled frame is checked against the full decode: exact
for liteframe, and decord's differing frame choices are counted.

`--frontend` times the model's whole front end on a 10 s clip of the same video: `load_video` of 64 frames at 448 px
with each resize path (`RESIZERS`: `exact`, `swscale`, `torch`), and with `exact` on one torch thread (as in a
DataLoader worker: the read's passes one after another), against a plain PyAV decode of every frame with no
conversion, the floor any decoder pays.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from av.video.reformatter import VideoReformatter

from liteframe.compression import DEFAULT
from liteframe.video import RESIZERS, load_video, open_video, sample_frames

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


def _full_decode(path: Path, indices: np.ndarray, convert_all: bool) -> np.ndarray:
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
    return out


def _plain_decode(path: Path) -> int:
    """Decode every frame, no conversion: the floor of any decoder."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in c.decode(stream))


def _sparse(path: Path, sample) -> np.ndarray:
    with open_video(path) as reader:  # a fresh open each time: the cost a data loader pays per video
        return reader.read(sample.timestamps).data.permute(0, 2, 3, 1).numpy()


def _decord(path: Path, sample) -> np.ndarray:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    return reader.get_batch(sample.indices.tolist()).asnumpy()


def _on_one_thread(fn):
    """`fn()` with torch on one thread, as in a DataLoader worker: the read's passes then run one after another."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def _timed(fn, best: dict, name: str):
    start = time.perf_counter()
    result = fn()
    best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    return result


FULL_RGB, FULL_DECODE = "decode every frame, RGB every frame", "decode every frame, RGB sampled only"
# Each strategy with its options: clips of the default compression's length, as InternVL reads them
STRATEGIES = {"uniform": {}, "clips": {"clip_frames": DEFAULT.clip_frames()}, "fps": {}}
# A frame whose mean absolute difference from the full decode's frame exceeds this is another frame (decord converts
# to RGB with other swscale flags: the same frame differs by a fraction of a level).
_OTHER_FRAME = 2.0


def run(minutes: float = 10.0, num_frames: int = 256, keyframe_s: int = 2, repeats: int = 2,
        cache_dir: str | None = None, content: str = "noise", frontend: bool = False) -> list[dict]:
    """Time each sampling strategy's sparse read (liteframe, decord) and two full decodes of the same video,
    interleaved over `repeats` rounds (best of each: the machine may be shared) -> rows. `speedup` is against the
    full decode that converts every frame; `speedup (decode)` against the one that converts only the sampled frames;
    `vs decord` is decord's time over liteframe's. `frontend` runs the front-end table instead (`_frontend`)."""
    if frontend:
        return _frontend(keyframe_s, repeats, cache_dir, content)
    path = long_video(minutes, keyframe_s, cache_dir, content)
    with open_video(path) as reader:
        info = reader.info
        samples = {s: sample_frames(info, num_frames, s, **kw) for s, kw in STRATEGIES.items()}
    has_decord = importlib.util.find_spec("decord") is not None
    # The RGB-every-frame decode keeps every strategy's frames (copies cost little beside converting every frame):
    # the reference that each sparse read is checked against.
    union = np.unique(np.concatenate([sample.indices for sample in samples.values()]))
    best: dict[str, float] = {}
    got: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for s, sample in samples.items():
            got[f"liteframe {s}"] = _timed(lambda: _sparse(path, sample), best, f"liteframe {s}")
            if has_decord:
                got[f"decord {s}"] = _timed(lambda: _decord(path, sample), best, f"decord {s}")
        every = _timed(lambda: _full_decode(path, union, True), best, FULL_RGB)
        _timed(lambda: _full_decode(path, samples["clips"].indices, False), best, FULL_DECODE)
    truth = {s: every[np.searchsorted(union, sample.indices)] for s, sample in samples.items()}
    rows = []
    for s in STRATEGIES:
        for lib in ("liteframe", "decord") if has_decord else ("liteframe",):
            name = f"{lib} {s}"
            other = [float(np.abs(a.astype(np.int16) - b).mean()) > _OTHER_FRAME for a, b in zip(got[name], truth[s])]
            rows.append({"method": f"{lib} sparse ({s})", "frames": num_frames, "seconds": best[name],
                         "frames/s": num_frames / best[name], "speedup": best[FULL_RGB] / best[name],
                         "speedup (decode)": best[FULL_DECODE] / best[name], "other frames": sum(other)})
            if lib == "decord":
                rows[-2]["vs decord"] = best[name] / best[f"liteframe {s}"]
    for name in (FULL_RGB, FULL_DECODE):
        rows.append({"method": name, "frames": num_frames, "seconds": best[name], "frames/s": num_frames / best[name],
                     "speedup": best[FULL_RGB] / best[name], "speedup (decode)": best[FULL_DECODE] / best[name],
                     "decoded/s": info.num_frames / best[name]})
    if not has_decord:
        rows.append({"method": "decord", "note": "not installed: pip install 'liteframe[bench]'"})
    return rows


FRONTEND_FRAMES, FRONTEND_SIZE, FRONTEND_SECONDS = 64, 448, 10
PLAIN = "plain PyAV decode of every frame, no conversion"


def _frontend(keyframe_s: int, repeats: int, cache_dir: str | None, content: str) -> list[dict]:
    """`load_video` of 64 frames at 448 px from a 10 s clip, each resize path, against a plain decode of every
    frame, interleaved over `repeats` rounds (best of each) -> rows with `x plain` = time over the plain decode's."""
    path = long_video(FRONTEND_SECONDS / 60, keyframe_s, cache_dir, content)
    subjects = {PLAIN: lambda: _plain_decode(path)}
    for resize in RESIZERS:
        subjects[f"load_video {FRONTEND_FRAMES} frames @{FRONTEND_SIZE} ({resize})"] = (
            lambda r=resize: load_video(path, FRONTEND_FRAMES, size=FRONTEND_SIZE, resize=r, **STRATEGIES["clips"]))
    subjects[f"load_video {FRONTEND_FRAMES} frames @{FRONTEND_SIZE} (exact, torch on one thread)"] = (
        lambda: _on_one_thread(lambda: load_video(path, FRONTEND_FRAMES, size=FRONTEND_SIZE, **STRATEGIES["clips"])))
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, fn in subjects.items():
            _timed(fn, best, name)
    return [{"method": name, "seconds": best[name], "x plain": best[name] / best[PLAIN]} for name in subjects]


__all__ = ["CONTENTS", "long_video", "run"]
