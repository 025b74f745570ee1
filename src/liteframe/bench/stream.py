"""`liteframe bench stream`: a live session (`LiveSession`) over a generated hour-long source on a tiny checkpoint,
fed faster than real time, asked the same question at 1, 5, 20 and 60 minutes of watched video (as soon as the
session has seen that far: a chunk or so more); beside each answer, `ask` on the frames the session had sampled by
then (its whole video: `ask` has no eviction).

The source is an MPEG-TS file written before the session starts and read as a live source replayed at `speed`
times real time (`open_live`'s `speed`: a session slower than that drops frames, counted). Each row: the answer's
latency (the question's prefill and generation, with the encoder paused meanwhile), what the session had seen, kept
and dropped, its cache, the process's peak memory (CPU: peak RSS so far; CUDA: peak allocated since the last mark),
and the real-time factor: compute time over the video time covered (below 1: faster than real time), for the
session its preprocessing, ViT and prefill so far (decoding runs in the live reader's own thread, overlapped), for
`ask` its whole wall time. The `ask` runs come after the session has ended, so that they do not slow it or count in
its memory; `ask` uses the incremental prefill too (`VideoLLM.incremental`).
"""
from __future__ import annotations

import resource
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import torch

from liteframe.devices import resolve_device, resolve_dtype
from liteframe.errors import InputError
from liteframe.llm import LiveSession, VideoLLM
from liteframe.testing import TINY_CHECKPOINTS
from liteframe.testing.videos import frame_image
from liteframe.video.live import open_live

COLUMNS = ["run", "watched min", "seen s", "frames", "dropped", "evicted slots", "cache tokens", "visual tokens",
           "prefill ms", "generation ms", "answer ms", "real-time factor", "peak MB"]
QUESTION = "What happens in this video? Describe it briefly."
MARKS = (1, 5, 20, 60)


def run(model_family: str = "internvl", minutes: float = 60, marks: Sequence[float] = MARKS, rate: float = 1.0,
        speed: float = 60.0, encoder: str = "wap", compression: int | str = 16, max_tokens: int = 2048,
        chunk_frames: int = 8, new_tokens: int = 8, repeats: int = 3, device: str | None = None,
        dtype: str = "auto", ask: bool = True) -> list[dict]:
    """The session's rows at each of `marks` (minutes) of a `minutes`-long source sampled at `rate` fps and fed at
    `speed` x real time (the question asked `repeats` times in a row: median latency), then (`ask`) `ask`'s rows on
    the frames watched by each mark, read from the same packets remuxed to MP4 (`COLUMNS`)."""
    if model_family not in TINY_CHECKPOINTS:
        raise InputError(f"model family {model_family!r}: choose from {', '.join(TINY_CHECKPOINTS)}")
    if not marks or min(marks) <= 0 or max(marks) > minutes or rate <= 0 or speed <= 0 or repeats < 1:
        raise InputError(f"marks {list(marks)}: each in (0, {minutes}] minutes; rate and speed positive, repeats "
                         "at least 1")
    device = resolve_device(device)
    with tempfile.TemporaryDirectory(prefix="liteframe-stream-") as tmp:
        tmp = Path(tmp)
        folder = TINY_CHECKPOINTS[model_family](tmp / "tiny")
        llm = VideoLLM.from_pretrained(folder, encoder, compression, device=device,
                                       dtype=resolve_dtype(dtype, device))
        live, recorded = hour_source(tmp / "source.ts", minutes, rate), tmp / "source.mp4"
        _remux(live, recorded)
        _ask(llm, recorded, {"watched min": 0, "frames": chunk_frames, "dropped": 0}, rate, new_tokens)  # warm-up
        rows = _watch(llm, live, sorted(marks), rate, speed, max_tokens, chunk_frames, new_tokens, repeats)
        if ask:
            rows += [_ask(llm, recorded, row, rate, new_tokens) for row in list(rows)]
    return rows


def hour_source(path: Path, minutes: float, fps: float, width: int = 128, height: int = 96) -> Path:
    """An MPEG-TS of `minutes` at `fps` frames per second, each frame coding its index (mod 256)."""
    with av.open(str(path), "w", format="mpegts") as mux:
        stream = mux.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "crf": "23", "g": "16"}
        for i in range(round(minutes * 60 * fps)):
            mux.mux(stream.encode(av.VideoFrame.from_ndarray(frame_image(i % 256, width, height), format="rgb24")))
        mux.mux(stream.encode())
    return path


def _remux(source: Path, path: Path) -> None:
    """The same packets in MP4, which `ask`'s reader seeks in quickly (MPEG-TS has no index)."""
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def _watch(llm, source: Path, marks: list[float], rate: float, speed: float, max_tokens: int, chunk_frames: int,
           new_tokens: int, repeats: int) -> list[dict]:
    rows = []
    with LiveSession(llm, open_live(source, rate, chunk_frames, speed=speed), max_tokens=max_tokens) as session:
        for mark in marks:
            last = mark * 60 - 1 / rate  # the last frame sampled before the mark
            while session.running and (session.context.span is None or session.context.span[1] < last - 1e-6):
                time.sleep(0.005)
            answers = [session.answer(QUESTION, new_tokens, min_new_tokens=new_tokens) for _ in range(repeats)]
            answer = answers[-1]
            ms = {key: statistics.median(a.latency_ms[key] for a in answers) for key in answer.latency_ms}
            busy = sum(session.latency_ms.values())
            rows.append({"run": "watch", "watched min": mark, "seen s": f"{answer.start:.0f}-{answer.end:.0f}",
                         "frames": answer.frames, "dropped": answer.dropped, "evicted slots": answer.evicted,
                         "cache tokens": answer.cache_tokens, "visual tokens": session.context.visual.tokens.shape[1],
                         "prefill ms": ms["llm_prefill"], "generation ms": ms["generation"], "answer ms": ms["total"],
                         "real-time factor": round(busy / 1e3 / (answer.end + 1 / rate), 4),
                         "peak MB": _peak_mb(llm.device)})
        if session.error is not None:
            raise session.error
    return rows


def _ask(llm, source: Path, watched: dict, rate: float, new_tokens: int) -> dict:
    """`ask` on the frames the session had sampled (kept or dropped) when it answered at the `watched` row's mark
    (the source has a frame at every sampled time)."""
    times = [k / rate for k in range(watched["frames"] + watched["dropped"])]
    times = times[:len(times) - len(times) % llm.encoder.frame_multiple]
    start = time.perf_counter()
    with torch.inference_mode():
        enc = llm.encode(source, timestamps=times, prefill=llm.incremental)
    answer = llm.answer(enc, QUESTION, new_tokens, min_new_tokens=new_tokens)
    total = (time.perf_counter() - start) * 1e3
    return {"run": "ask", "watched min": watched["watched min"], "seen s": f"{times[0]:.0f}-{times[-1]:.0f}",
            "frames": len(times),
            "dropped": 0, "evicted slots": 0, "cache tokens": answer.prompt_tokens,
            "visual tokens": answer.visual_tokens, "prefill ms": answer.latency_ms["llm_prefill"],
            "generation ms": answer.latency_ms["generation"], "answer ms": total,
            "real-time factor": round(total / 1e3 / (times[-1] + 1 / rate), 4), "peak MB": _peak_mb(llm.device)}


def _peak_mb(device: torch.device) -> float:
    """CUDA: the peak allocated since the last call (then reset); CPU: the process's peak RSS so far."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
        return round(peak, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
