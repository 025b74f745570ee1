"""Benchmark readers: a local copy of each dataset, in its published layout, -> `Question`s.

- Video-MME (`lmms-lab/Video-MME`): `videomme/test-*.parquet` (also `test-*.parquet` at the top), videos under
  `data/` (`<videoID>.mp4`, `.MP4` or `.mkv`), subtitles under `subtitle/<videoID>.srt`.
- MLVU dev (`MLVU/MLVU_Dev`): `json/<n>_<task>.json` (also under `MLVU/`), videos under `video/<n>_<task>/`; the
  multiple-choice tasks only (the generation tasks `sub_scene` and `summary` need an LLM judge).
- LongVideoBench validation (`longvideobench/LongVideoBench`): `lvb_val.json`, `videos/`, `subtitles/`.

Each `Question` carries the fields lmms-eval's task utilities read, under the dataset's own names, so that
`prompts` builds the same text lmms-eval builds for the same document.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from liteframe.errors import InputError, one_line

BENCHMARKS = ("videomme", "videomme-sub", "mlvu", "longvideobench")
MLVU_TASKS = ("plotQA", "needle", "ego", "count", "order", "anomaly_reco", "topic_reasoning")
LETTERS = "ABCDE"


@dataclass(frozen=True)
class Question:
    """One multiple-choice question. `options` as the dataset stores them (Video-MME's carry their letter, `"A. ..."`,
    the others' do not); `answer` the correct letter;
    `groups` the benchmark's aggregation fields (e.g. duration, domain, task_type); `subtitles` a file or None."""

    benchmark: str
    question_id: str
    video: Path
    question: str
    options: tuple[str, ...]
    answer: str
    groups: dict[str, str] = field(default_factory=dict)
    subtitles: Path | None = None
    extra: dict = field(default_factory=dict)  # what a prompt needs beyond these (LongVideoBench's subtitle offset)


def load_benchmark(benchmark: str, data: str | Path) -> list[Question]:
    """The questions of `benchmark` (one of `BENCHMARKS`) from the folder `data`, in the dataset's order."""
    data = Path(data)
    if not data.is_dir():
        raise InputError(f"--data {data}: not a folder")
    readers = {"videomme": _videomme, "videomme-sub": _videomme, "mlvu": _mlvu, "longvideobench": _longvideobench}
    if benchmark not in readers:
        raise InputError(f"benchmark {benchmark!r}: choose one of {', '.join(BENCHMARKS)}")
    questions = readers[benchmark](data, benchmark)
    if not questions:
        raise InputError(f"--data {data}: no {benchmark} questions found")
    return questions


def _videomme(data: Path, benchmark: str) -> list[Question]:
    tables = sorted(data.glob("videomme/test-*.parquet")) or sorted(data.glob("test-*.parquet"))
    if not tables:
        raise InputError(f"--data {data}: no videomme/test-*.parquet (expected the Video-MME layout: "
                         "videomme/test-*.parquet, data/, subtitle/)")
    rows = [row for table in tables for row in _parquet_rows(table)]
    need = ("videoID", "question_id", "question", "options", "answer", "duration", "domain", "sub_category",
            "task_type")
    _check_fields(rows, need, tables[0])
    return [
        Question(benchmark, str(r["question_id"]), _videomme_video(data, r["videoID"]), r["question"],
                 tuple(r["options"]), r["answer"],
                 {"duration": r["duration"], "domain": r["domain"], "sub_category": r["sub_category"],
                  "task_type": r["task_type"]},
                 data / "subtitle" / f"{r['videoID']}.srt" if benchmark == "videomme-sub" else None)
        for r in rows
    ]


def _videomme_video(data: Path, video_id: str) -> Path:
    """lmms-eval's lookup: `<id>.mp4`, else `.MP4`, else `.mkv` (a missing file fails later, as that video)."""
    for suffix in (".mp4", ".MP4", ".mkv"):
        if (data / "data" / f"{video_id}{suffix}").exists():
            return data / "data" / f"{video_id}{suffix}"
    return data / "data" / f"{video_id}.mp4"


def _mlvu(data: Path, benchmark: str) -> list[Question]:
    root = data / "MLVU" if (data / "MLVU" / "json").is_dir() else data
    files = {_task_of(p): p for p in sorted((root / "json").glob("*.json"))}
    if not files:
        raise InputError(f"--data {data}: no json/*.json annotations (expected the MLVU dev layout: "
                         "json/1_plotQA.json ..., video/1_plotQA/ ...)")
    questions = []
    for task in MLVU_TASKS:
        if task not in files:
            continue
        path = files[task]
        rows = _read_json(path)
        _check_fields(rows, ("video", "question", "candidates", "answer"), path)
        for i, r in enumerate(rows):
            _check_options(r["candidates"], path, i)
            if r["answer"] not in r["candidates"]:
                raise InputError(f"{path}: item {i}: answer {r['answer']!r} is not among its candidates")
            questions.append(Question(
                benchmark, f"{task}_{i}", root / "video" / path.stem / r["video"], r["question"],
                tuple(r["candidates"]), LETTERS[r["candidates"].index(r["answer"])], {"task_type": task}))
    if not questions:
        raise InputError(f"--data {data}: json/ holds none of the multiple-choice tasks {', '.join(MLVU_TASKS)}")
    return questions


def _check_options(options, path: Path, item: int) -> None:
    """One line unless `options` is a list of 1 to 5 choices (the letters A-E the prompts and parsing know)."""
    if not isinstance(options, list) or not 1 <= len(options) <= len(LETTERS):
        raise InputError(f"{path}: item {item}: candidates must be a list of 1 to {len(LETTERS)} options, "
                         f"got {options!r}")


def _task_of(path: Path) -> str:
    """`1_plotQA.json` -> `plotQA`; `6_anomaly_reco.json` -> `anomaly_reco`."""
    return re.sub(r"^\d+_", "", path.stem)


def _longvideobench(data: Path, benchmark: str) -> list[Question]:
    path = data / "lvb_val.json"
    if not path.is_file():
        raise InputError(f"--data {data}: no lvb_val.json (expected the LongVideoBench layout: lvb_val.json, "
                         "videos/, subtitles/)")
    rows = _read_json(path)
    need = ("id", "question", "candidates", "correct_choice", "video_path", "subtitle_path", "duration",
            "duration_group", "question_category", "starting_timestamp_for_subtitles")
    _check_fields(rows, need, path)
    for i, r in enumerate(rows):
        _check_options(r["candidates"], path, i)
        if r["correct_choice"] not in range(len(r["candidates"])):
            raise InputError(f"{path}: item {i}: correct_choice {r['correct_choice']!r} is not the index of a "
                             "candidate")
    return [
        Question(benchmark, str(r["id"]), data / "videos" / r["video_path"], r["question"], tuple(r["candidates"]),
                 LETTERS[r["correct_choice"]],
                 {"duration_group": str(r["duration_group"]), "question_category": r["question_category"]},
                 data / "subtitles" / r["subtitle_path"],
                 {"duration": float(r["duration"]), "subtitle_start": float(r["starting_timestamp_for_subtitles"])})
        for r in rows
    ]


def _parquet_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # noqa: BLE001  pyarrow raises several unrelated types for a bad file
        raise InputError(f"{path}: not a readable parquet table ({one_line(err)})") from None


def _read_json(path: Path) -> list[dict]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid JSON ({one_line(err)})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{path}: expected a JSON list of question objects")
    return rows


def _check_fields(rows: list[dict], need: tuple[str, ...], path: Path) -> None:
    for i, row in enumerate(rows):
        missing = [k for k in need if k not in row]
        if missing:
            raise InputError(f"{path}: item {i} lacks {', '.join(missing)}")
