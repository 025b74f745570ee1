"""The benchmark contract, in the shape of an lmms-eval task: `load` (the dataset's documents -> `Question`s),
`prompt` (`doc_to_text`), `score` (`process_results`), `groups` and `aggregate` (the metric's aggregation) and
`max_new_tokens` (`generation_kwargs`). Each benchmark is a `Task` registered by name in `liteframe.eval.tasks`.

Also the readers' shared checks: a bad annotation file is one `InputError` naming the file, the item and the reason.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from liteframe.errors import InputError, one_line

LETTERS = "ABCDE"
SUBTITLES = ("liteframe", "lmms-eval")  # how subtitle lines are chosen: see docs/results/eval.md


@dataclass(frozen=True)
class Question:
    """One multiple-choice question. `options` as the dataset stores them (Video-MME's carry their letter, `"A. ..."`,
    the others' do not); `answer` the correct letter; `groups` the fields its benchmark aggregates by (duration,
    domain, task_type, ...); `subtitles` a file or None; `extra` what a prompt needs beyond these."""

    benchmark: str
    question_id: str
    video: Path
    question: str
    options: tuple[str, ...]
    answer: str
    groups: dict[str, str] = field(default_factory=dict)
    subtitles: Path | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Prompt:
    """`text` goes after the video; `slot_text[i]`, when given, before image slot i (empty: nothing)."""

    text: str
    slot_text: list[str] | None = None


@dataclass(frozen=True)
class Frames:
    """The encoded video as a prompt sees it: `timestamps` (s) of the sampled frames, the image `slots` as
    `(first, last)` 1-based frames (None: one slot per frame), and the video's declared `fps` and `frame_count`
    (filled only for a task that sets `video_info`)."""

    timestamps: Sequence[float] = ()
    slots: Sequence[tuple[int, int]] | None = None
    fps: float = 0.0
    frame_count: int = 0


class Task:
    """One benchmark. `name` is liteframe's (`--benchmark`), `lmms_eval` the lmms-eval task it reproduces;
    `max_new_tokens` that task's generation limit; `groups` the record fields its accuracy is broken down by;
    `video_info`: `prompt` needs the video's fps and frame count."""

    name: str
    lmms_eval: str
    max_new_tokens: int
    groups: tuple[str, ...]
    video_info: bool = False

    def load(self, data: Path) -> list[Question]:
        """The questions under the folder `data`, in the dataset's order."""
        raise NotImplementedError

    def prompt(self, q: Question, frames: Frames = Frames(), subtitles: str = "liteframe") -> Prompt:
        """The text lmms-eval's `doc_to_text` builds for `q` (subtitles, where the benchmark has them, chosen on
        `frames` as `subtitles` says)."""
        raise NotImplementedError

    def score(self, q: Question, text: str) -> dict:
        """`{"prediction": letter or "", "correct": bool, ...}` for the generated `text` (reasoning stripped)."""
        raise NotImplementedError

    def aggregate(self, records: list[dict]) -> list[dict]:
        """Summary rows `{benchmark, group, questions, accuracy (%)}`: `overall` first (with `lmms-eval`, the figure
        lmms-eval prints for the run, in its own units), then `field=value` per group, then `failed` if any."""
        answered = [r for r in records if "error" not in r]
        rows = accuracy_rows(self.name, answered, self.groups)
        rows[0]["lmms-eval"] = rows[0]["accuracy"]
        return rows + failed_row(self.name, records)


def accuracy_rows(benchmark: str, answered: list[dict], groups: Sequence[str]) -> list[dict]:
    """`overall` (accuracy over all answered records), then one row per value of each field in `groups`."""
    rows = [{"benchmark": benchmark, "group": "overall", "questions": len(answered),
             "accuracy": pct([r["correct"] for r in answered])}]
    for name in groups:
        split = defaultdict(list)
        for r in answered:
            split[str(r[name])].append(r["correct"])
        rows += [{"benchmark": benchmark, "group": f"{name}={value}", "questions": len(split[value]),
                  "accuracy": pct(split[value])} for value in sorted(split)]
    return rows


def failed_row(benchmark: str, records: list[dict]) -> list[dict]:
    """The `failed` row (questions whose video, or subtitles, could not be read), or nothing."""
    failed = sum("error" in r for r in records)
    return [{"benchmark": benchmark, "group": "failed", "questions": failed}] if failed else []


def pct(flags: Sequence[bool]) -> float:
    return 100.0 * sum(flags) / len(flags) if flags else 0.0


def parquet_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # noqa: BLE001  pyarrow raises several unrelated types for a bad file
        raise InputError(f"{path}: not a readable parquet table ({one_line(err)})") from None


def read_json(path: Path) -> list[dict]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({one_line(err)})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{path}: expected a JSON list of question objects")
    return rows


def check_fields(rows: list[dict], need: Sequence[str], path: Path) -> None:
    for i, row in enumerate(rows):
        missing = [k for k in need if k not in row]
        if missing:
            raise InputError(f"{path}: item {i} lacks {', '.join(missing)}")


def check_options(options, path: Path, item: int) -> None:
    """One line unless `options` is a list of 1 to 5 choices (the letters A-E the prompts and parsing know)."""
    if not isinstance(options, list) or not 1 <= len(options) <= len(LETTERS):
        raise InputError(f"{path}: item {item}: candidates must be a list of 1 to {len(LETTERS)} options, "
                         f"got {options!r}")
