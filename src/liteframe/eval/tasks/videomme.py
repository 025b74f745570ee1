"""Video-MME (`lmms-lab/Video-MME`), without subtitles (lmms-eval's `videomme`) and with them
(`videomme_w_subtitle`).

Layout: `videomme/test-*.parquet` (also `test-*.parquet` at the top), videos under `data/` (`<videoID>.mp4`,
`.MP4` or `.mkv`), subtitles under `subtitle/<videoID>.srt`.

Subtitles. By default (`liteframe`) the lines are those on screen at the frames this run samples, in file order,
each kept whole when it lacks Video-MME's `<font>` tag, every block kept even when two share a time, and `.mkv`
videos get theirs. `lmms-eval` reproduces lmms-eval's text instead: its own 32 frames spread evenly over the
declared frame count, one line per distinct (start, end) (the last block of a time wins), lines without the tag
dropped, in the order a Python set of line indices iterates, and no lines unless `data/<videoID>.mp4` exists (it
opens only that name). docs/results/eval.md lists the differences.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from liteframe.errors import InputError, one_line
from liteframe.eval.parsing import extract_letter
from liteframe.eval.tasks.base import Frames, Prompt, Question, Task, check_fields, parquet_rows

INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video and the "
               "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
POST = "\nAnswer with the option's letter from the given choices directly."  # videomme.yaml's default post_prompt
SUBTITLE_HEADER = "This video's subtitles are listed below: \n"
LMMS_EVAL_FRAMES = 32  # videomme_w_subtitle.yaml's frame_num
_FONT = re.compile(r'<font color="white" size=".72c">(.*?)</font>')


class VideoMME(Task):
    max_new_tokens = 16
    groups = ("duration", "domain", "sub_category", "task_type")

    def __init__(self, name: str, lmms_eval: str, subtitles: bool):
        self.name, self.lmms_eval, self.subtitles = name, lmms_eval, subtitles
        self.video_info = subtitles

    def load(self, data: Path) -> list[Question]:
        tables = sorted(data.glob("videomme/test-*.parquet")) or sorted(data.glob("test-*.parquet"))
        if not tables:
            raise InputError(f"--data {data}: no videomme/test-*.parquet (expected the Video-MME layout: "
                             "videomme/test-*.parquet, data/, subtitle/)")
        rows = [row for table in tables for row in parquet_rows(table)]
        need = ("videoID", "question_id", "question", "options", "answer", "duration", "domain", "sub_category",
                "task_type")
        check_fields(rows, need, tables[0])
        return [
            Question(self.name, str(r["question_id"]), _video(data, r["videoID"]), r["question"], tuple(r["options"]),
                     r["answer"], {k: r[k] for k in self.groups},
                     data / "subtitle" / f"{r['videoID']}.srt" if self.subtitles else None)
            for r in rows
        ]

    def prompt(self, q: Question, frames: Frames = Frames(), subtitles: str = "liteframe") -> Prompt:
        question = q.question + "\n" + "\n".join(q.options)
        if not self.subtitles:
            return Prompt(f"{INSTRUCTION}\n{question}\n{POST}")
        if not q.subtitles.is_file():
            lines = "No subtitles available"
        elif subtitles == "lmms-eval":
            lines = "\n".join(lmms_eval_subtitles(q.subtitles, q.video, frames.fps, frames.frame_count))
        else:
            lines = "\n".join(subtitles_at(q.subtitles, frames.timestamps, frames.fps))
        return Prompt(f"{SUBTITLE_HEADER}{lines}\n{INSTRUCTION}\n{question}\nThe best answer is:")

    def score(self, q: Question, text: str) -> dict:
        prediction = extract_letter(text, "ABCD")
        return {"prediction": prediction, "correct": prediction.lower() == q.answer.lower()}


def _video(data: Path, video_id: str) -> Path:
    """lmms-eval's lookup: `<id>.mp4`, else `.MP4`, else `.mkv` (a missing file fails later, as that video)."""
    for suffix in (".mp4", ".MP4", ".mkv"):
        if (data / "data" / f"{video_id}{suffix}").exists():
            return data / "data" / f"{video_id}{suffix}"
    return data / "data" / f"{video_id}.mp4"


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


def subtitles_at(path: Path, timestamps: Sequence[float], fps: float) -> list[str]:
    """The lines on screen at a sampled frame, in file order: a line covers frames [int(start*fps), int(end*fps)).
    The text inside Video-MME's `<font>` tag is kept (a line without the tag is kept whole)."""
    frames = [round(t * fps) for t in timestamps]
    shown = []
    for start, end, text in parse_srt(path):
        first, stop = int(start * fps), int(end * fps)
        if any(first <= f < stop for f in frames):
            match = _FONT.search(text)
            shown.append(match.group(1) if match else text)
    return shown


def lmms_eval_subtitles(path: Path, video: Path, fps: float, frame_count: int) -> list[str]:
    """The lines lmms-eval's `videomme_doc_to_text_subtitle` lists for `video` of `fps` and `frame_count` (its
    OpenCV reads of the same header fields; nothing when the video is not `<videoID>.mp4`)."""
    if video.suffix != ".mp4":  # lmms-eval opens data/<id>.mp4 only: a capture of 0 fps and 0 frames, no lines
        return []
    blocks = {(start, end): text for start, end, text in parse_srt(path)}  # a repeated time keeps its last text
    spans = [(int(start * fps), int(end * fps), text) for (start, end), text in blocks.items()]
    frames = np.linspace(0, frame_count - 1, LMMS_EVAL_FRAMES, dtype=int).tolist()
    shown = [i for f in frames for i, (first, stop, _) in enumerate(spans) if first <= f < stop]
    # lmms-eval deduplicates through a set: its iteration order is kept on purpose (it is the text lmms-eval sends)
    lines = [_FONT.findall(spans[i][2]) for i in list(set(shown))]
    return [found[0] for found in lines if found]


VIDEOMME = VideoMME("videomme", "videomme", subtitles=False)
VIDEOMME_SUB = VideoMME("videomme-sub", "videomme_w_subtitle", subtitles=True)
