"""LongVideoBench validation with interleaved subtitles (lmms-eval's `longvideobench_val_i`), in either of the
layouts the dataset (`longvideobench/LongVideoBench`) ships: `lvb_val.json` (`candidates`, a list) or
`validation-*.parquet` (`option0` .. `option4`, `"N/A"` for an absent one, as lmms-eval reads it); videos under
`videos/`, subtitles under `subtitles/`.

The subtitles follow the benchmark's own rule, on the frames this run samples (lmms-eval computes its own 16
timestamps): each line sits before the first frame after its midpoint, and is kept only if a frame falls inside
it. A question whose subtitle file is missing or unreadable fails alone (recorded, the run goes on).

Scoring: LongVideoBench's parser (the first capital A-E once answer phrases are removed); an answer without one is
a random choice, seeded by the question so that runs repeat. Reported as lmms-eval reports `lvb_acc`: the fraction
correct rounded to 5 places (each question once; lmms-eval's "Overall" count lists each twice, once under its
duration group and once under its category), broken down by duration group and question category.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from liteframe.errors import InputError, one_line
from liteframe.eval.parsing import guess, parse_longvideobench
from liteframe.eval.tasks.base import (LETTERS, Frames, Prompt, Question, Task, check_fields, check_options,
                                       parquet_rows, read_json)

POST = "Answer with the option's letter from the given choices directly.\n"  # longvideobench_val_i.yaml
NEED = ("id", "question", "correct_choice", "video_path", "subtitle_path", "duration", "duration_group",
        "question_category", "starting_timestamp_for_subtitles")


class LongVideoBench(Task):
    name, lmms_eval = "longvideobench", "longvideobench_val_i"
    max_new_tokens = 32
    groups = ("duration_group", "question_category")

    def load(self, data: Path) -> list[Question]:
        if (data / "lvb_val.json").is_file():
            path = data / "lvb_val.json"
            rows = read_json(path)
            check_fields(rows, (*NEED, "candidates"), path)
            options = [r["candidates"] for r in rows]
        elif tables := sorted(data.glob("validation-*.parquet")):
            path = tables[0]
            rows = [row for table in tables for row in parquet_rows(table)]
            check_fields(rows, (*NEED, *(f"option{k}" for k in range(5))), path)
            options = [_present(r, path, i) for i, r in enumerate(rows)]
        else:
            raise InputError(f"--data {data}: no lvb_val.json and no validation-*.parquet (expected the "
                             "LongVideoBench layout: lvb_val.json or validation-00000-of-00001.parquet, videos/, "
                             "subtitles/)")
        questions = []
        for i, (r, opts) in enumerate(zip(rows, options)):
            check_options(opts, path, i)
            if r["correct_choice"] not in range(len(opts)):
                raise InputError(f"{path}: item {i}: correct_choice {r['correct_choice']!r} is not the index of a "
                                 "candidate")
            questions.append(Question(
                self.name, str(r["id"]), data / "videos" / r["video_path"], r["question"], tuple(opts),
                LETTERS[r["correct_choice"]],
                {"duration_group": str(r["duration_group"]), "question_category": r["question_category"]},
                data / "subtitles" / r["subtitle_path"],
                {"duration": float(r["duration"]), "subtitle_start": float(r["starting_timestamp_for_subtitles"])}))
        return questions

    def prompt(self, q: Question, frames: Frames = Frames(), subtitles: str = "liteframe") -> Prompt:
        question = q.question + "\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(q.options))
        before, after = interleave(read_subtitles(q.subtitles), frames.timestamps, q.extra["subtitle_start"],
                                   q.extra["duration"])
        slots = frames.slots or [(i, i) for i in range(1, len(frames.timestamps) + 1)]
        slot_text = ["\n".join(line for frame in before[first - 1:last] for line in frame) for first, last in slots]
        tail = "".join(f"{line}\n" for line in after)
        return Prompt(f"{tail}{question}\n{POST}", slot_text)

    def score(self, q: Question, text: str) -> dict:
        prediction = parse_longvideobench(text)
        if prediction:
            return {"prediction": prediction, "correct": prediction == q.answer}
        picked = guess(q.question_id, LETTERS[:len(q.options)])
        return {"prediction": "", "guess": picked, "correct": picked == q.answer}

    def aggregate(self, records: list[dict]) -> list[dict]:
        rows = super().aggregate(records)
        rows[0]["lmms-eval"] = round(rows[0]["accuracy"] / 100, 5)
        return rows


def _present(row: dict, path: Path, item: int) -> list[str]:
    """`option0` .. `option4` up to the first `"N/A"`; an option after an "N/A" is refused, since lmms-eval's
    prompt skips it while its scoring stops there."""
    options = [row[f"option{k}"] for k in range(5)]
    given = options[:options.index("N/A")] if "N/A" in options else options
    if any(o != "N/A" for o in options[len(given):]):
        raise InputError(f"{path}: item {item}: an option follows an \"N/A\" one ({options!r})")
    return given


def read_subtitles(path: Path) -> list[tuple[float, float | None, str]]:
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
    except FileNotFoundError:
        raise InputError(f"{path}: no such subtitle file") from None
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


LONGVIDEOBENCH = LongVideoBench()
