"""MLVU dev, the multiple-choice tasks (lmms-eval's `mlvu_dev`), in either of two layouts:

- the original release (`MLVU/MLVU_Dev`): `json/<n>_<task>.json` (also under `MLVU/`), each item `video`,
  `question`, `candidates` and `answer` (the correct candidate's text), videos under `video/<n>_<task>/`; the
  generation tasks (`sub_scene`, `summary`) are left out: they need an LLM judge;
- lmms-eval's (`sy1998/MLVU_dev`): `mlvu/test-*.parquet` (also `test-*.parquet` at the top), each row
  `video_name`, `question` with the options inside as `(A) ...` lines, `answer` a letter, `task_type` (and
  `question_id`, used when present, else the row number); `video_name` is relative to the folder the video zips
  are unpacked into, which is `--data` (lmms-eval unpacks them into its `mlvu` cache folder).

Both become lmms-eval's document: the question followed by one `(X) option` line per candidate.

Aggregation: accuracy per task type and, overall, their mean. lmms-eval divides by its 7 dev task types whatever
the run holds; a run missing some is marked partial, with lmms-eval's figure beside the mean of those present.
"""
from __future__ import annotations

import re
from pathlib import Path

from liteframe.errors import InputError
from liteframe.eval.parsing import extract_letter
from liteframe.eval.tasks.base import (LETTERS, Frames, Prompt, Question, Task, accuracy_rows, check_fields,
                                       check_options, failed_row, parquet_rows, read_json)

TASK_TYPES = ("plotQA", "needle", "ego", "count", "order", "anomaly_reco", "topic_reasoning")  # the dev set's 7
POST = "\nOnly give the best option.\nBest option: ("  # mlvu_dev.yaml's post_prompt
_OPTION = re.compile(r"^\(([A-E])\) ?(.*)$", re.MULTILINE)


class MLVU(Task):
    name, lmms_eval = "mlvu", "mlvu_dev"
    max_new_tokens = 16
    groups = ("task_type",)

    def load(self, data: Path) -> list[Question]:
        root = data / "MLVU" if (data / "MLVU" / "json").is_dir() else data
        if (root / "json").is_dir():
            return self._original(data, root)
        tables = sorted(data.glob("mlvu/test-*.parquet")) or sorted(data.glob("test-*.parquet"))
        if tables:
            return self._lmms_eval(data, tables)
        raise InputError(f"--data {data}: no json/*.json annotations and no mlvu/test-*.parquet (expected the MLVU "
                         "dev layout: json/1_plotQA.json ..., video/1_plotQA/ ...; or lmms-eval's: "
                         "mlvu/test-00000-of-00001.parquet with the videos beside it)")

    def _original(self, data: Path, root: Path) -> list[Question]:
        files = {re.sub(r"^\d+_", "", p.stem): p for p in sorted((root / "json").glob("*.json"))}
        questions = []
        for task in TASK_TYPES:
            if task not in files:
                continue
            path = files[task]
            rows = read_json(path)
            check_fields(rows, ("video", "question", "candidates", "answer"), path)
            for i, r in enumerate(rows):
                check_options(r["candidates"], path, i)
                if r["answer"] not in r["candidates"]:
                    raise InputError(f"{path}: item {i}: answer {r['answer']!r} is not among its candidates")
                text = r["question"] + "\n" + "".join(f"({LETTERS[k]}) {c}\n" for k, c in enumerate(r["candidates"]))
                questions.append(Question(self.name, f"{task}_{i}", root / "video" / path.stem / r["video"], text,
                                          tuple(r["candidates"]), LETTERS[r["candidates"].index(r["answer"])],
                                          {"task_type": task}))
        if not questions:
            raise InputError(f"--data {data}: json/ holds none of the multiple-choice tasks {', '.join(TASK_TYPES)}")
        return questions

    def _lmms_eval(self, data: Path, tables: list[Path]) -> list[Question]:
        rows = [row for table in tables for row in parquet_rows(table)]
        check_fields(rows, ("video_name", "question", "answer", "task_type"), tables[0])
        questions = []
        for i, r in enumerate(rows):
            options = dict(_OPTION.findall(r["question"]))
            if r["task_type"] not in TASK_TYPES:
                raise InputError(f"{tables[0]}: item {i}: task_type {r['task_type']!r} is not one of the dev set's "
                                 f"multiple-choice tasks {', '.join(TASK_TYPES)}")
            if r["answer"] not in options:
                raise InputError(f"{tables[0]}: item {i}: answer {r['answer']!r} is not the letter of one of the "
                                 f"question's (A) ... option lines")
            questions.append(Question(self.name, str(r.get("question_id", i)), data / r["video_name"], r["question"],
                                      tuple(options.values()), r["answer"], {"task_type": r["task_type"]}))
        return questions

    def prompt(self, q: Question, frames: Frames = Frames(), subtitles: str = "liteframe") -> Prompt:
        return Prompt(f"{q.question}{POST}")

    def score(self, q: Question, text: str) -> dict:
        prediction = extract_letter(text, "ABCD")
        return {"prediction": prediction, "correct": prediction == q.answer}

    def aggregate(self, records: list[dict]) -> list[dict]:
        answered = [r for r in records if "error" not in r]
        rows = accuracy_rows(self.name, answered, self.groups)
        by_type = {r["group"].removeprefix("task_type="): r["accuracy"] for r in rows[1:]}
        overall = rows[0]
        overall["accuracy"] = sum(by_type.values()) / len(by_type) if by_type else 0.0
        overall["lmms-eval"] = sum(by_type.values()) / len(TASK_TYPES)
        if len(by_type) < len(TASK_TYPES):
            overall["partial"] = f"{len(by_type)} of {len(TASK_TYPES)} task types"
        return rows + failed_row(self.name, records)


MLVU_DEV = MLVU()
