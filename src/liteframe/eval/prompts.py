"""The question text each benchmark puts after the video, character for character as lmms-eval's task utilities
build it with their default settings (`videomme`, `videomme_w_subtitle`, `mlvu_dev`, `longvideobench_val_i`).

Subtitles follow each benchmark's official code, on the frames this run actually samples (lmms-eval samples its
own 32 or 16): Video-MME "with subtitles" lists the lines shown at the sampled frames; LongVideoBench interleaves
its lines with the frames, each line before the first frame after its midpoint (the `Prompt.slot_text` lines go
before the image slots, the lines after the last frame before the question).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from liteframe.errors import InputError, one_line
from liteframe.eval.datasets import LETTERS, Question

VIDEOMME_INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video and the "
                        "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
VIDEOMME_POST = "\nAnswer with the option's letter from the given choices directly."
VIDEOMME_SUB_HEADER = "This video's subtitles are listed below: \n"
MLVU_POST = "\nOnly give the best option.\nBest option: ("
LVB_POST = "Answer with the option's letter from the given choices directly.\n"
_FONT = re.compile(r'<font color="white" size=".72c">(.*?)</font>')


@dataclass
class Prompt:
    """`text` goes after the video; `slot_text[i]`, when given, before image slot i (empty: nothing)."""

    text: str
    slot_text: list[str] | None = None


def build_prompt(q: Question, timestamps: Sequence[float] = (), fps: float = 0.0,
                 slots: Sequence[tuple[int, int]] | None = None) -> Prompt:
    """The prompt for `q`; `timestamps` (seconds) are the sampled frames, `fps` the video's, `slots` the image slots
    as `(first, last)` frames (1-based; default one per frame), for the subtitles."""
    if q.benchmark == "videomme":
        return Prompt(f"{VIDEOMME_INSTRUCTION}\n{_videomme_question(q)}\n{VIDEOMME_POST}")
    if q.benchmark == "videomme-sub":
        lines = videomme_subtitles(q.subtitles, timestamps, fps) if q.subtitles.is_file() else None
        subtitles = "\n".join(lines) if lines is not None else "No subtitles available"
        return Prompt(f"{VIDEOMME_SUB_HEADER}{subtitles}\n{VIDEOMME_INSTRUCTION}\n{_videomme_question(q)}\n"
                      "The best answer is:")
    if q.benchmark == "mlvu":
        options = "".join(f"({LETTERS[i]}) {o}\n" for i, o in enumerate(q.options))
        return Prompt(f"{q.question}\n{options}{MLVU_POST}")
    question = q.question + "\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(q.options))
    before, after = interleave(read_lvb_subtitles(q.subtitles), timestamps, q.extra["subtitle_start"],
                               q.extra["duration"])
    slots = slots or [(i, i) for i in range(1, len(timestamps) + 1)]
    slot_text = ["\n".join(line for frame in before[first - 1:last] for line in frame) for first, last in slots]
    tail = "".join(f"{line}\n" for line in after)
    return Prompt(f"{tail}{question}\n{LVB_POST}", slot_text)


def _videomme_question(q: Question) -> str:
    return q.question + "\n" + "\n".join(q.options)


def parse_srt(path: Path) -> list[tuple[float, float, str]]:
    """`(start s, end s, text)` per block of an .srt file, its lines joined by spaces (Video-MME's reading)."""
    try:
        blocks = path.read_text(encoding="utf-8").split("\n\n")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the subtitles ({one_line(err)})") from None
    out = []
    for block in blocks:
        lines = block.strip("\n").split("\n")
        if len(lines) >= 3 and " --> " in lines[1]:
            try:
                start, end = (_srt_seconds(t.strip()) for t in lines[1].split(" --> "))
            except ValueError:
                raise InputError(f"{path}: bad subtitle time line {lines[1]!r} (expected HH:MM:SS,mmm --> "
                                 "HH:MM:SS,mmm)") from None
            out.append((start, end, " ".join(lines[2:])))
    return out


def _srt_seconds(stamp: str) -> float:
    h, m, rest = stamp.split(":")
    s, ms = rest.split(",")
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def videomme_subtitles(path: Path, timestamps: Sequence[float], fps: float) -> list[str]:
    """The lines on screen at a sampled frame, in file order: a line covers frames [int(start*fps), int(end*fps)).
    The text inside Video-MME's `<font>` tag is kept (a line without the tag, which lmms-eval drops, is kept whole)."""
    frames = [round(t * fps) for t in timestamps]
    shown = []
    for start, end, text in parse_srt(path):
        first, stop = int(start * fps), int(end * fps)
        if any(first <= f < stop for f in frames):
            match = _FONT.search(text)
            shown.append(match.group(1) if match else text)
    return shown


def read_lvb_subtitles(path: Path) -> list[tuple[float, float | None, str]]:
    """LongVideoBench's subtitle JSON -> `(start, end, text)`: items are `{"start": "HH:MM:SS.fff", "end": ...,
    "line": ...}` or `{"timestamp": [start, end], "text": ...}` (end None: until the video ends)."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
        out = []
        for item in items:
            if "timestamp" in item:
                start, end = item["timestamp"]
                out.append((float(start), end if isinstance(end, float) else None, item["text"]))
            else:
                out.append((_hms(item["start"]), _hms(item["end"]), item["line"]))
        return out
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise InputError(f"{path}: not LongVideoBench subtitles ({one_line(err)})") from None


def _hms(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def interleave(subtitles, timestamps: Sequence[float], offset: float, duration: float):
    """LongVideoBench's interleaving -> (lines before each frame: list per frame, lines after the last frame).
    A line sits at its midpoint (times shifted by `offset`), after every frame at or before it; it is kept only if
    a frame falls strictly inside it (widened to 1 s around the midpoint when shorter)."""
    before: list[list[str]] = [[] for _ in timestamps]
    after: list[str] = []
    placed = 0
    for start, end, text in subtitles:
        start, end = start - offset, (duration if end is None else end) - offset
        middle = (start + end) / 2
        while placed < len(timestamps) and timestamps[placed] <= middle:
            placed += 1
        if end - start < 1:
            start, end = middle - 0.5, middle + 0.5
        if any(start < t < end for t in timestamps):
            (before[placed] if placed < len(timestamps) else after).append(text)
    return before, after
