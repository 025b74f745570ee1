"""The run file `liteframe eval` writes: JSON lines, the run's identity first (`{"run": {...}}`, see `identity`),
then one record per question, appended and flushed as each is answered, so that a killed run loses at most the
line being written and a rerun resumes after the last whole one."""
from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from liteframe.errors import InputError
from liteframe.io import atomic_write


def read_output(path: Path) -> tuple[dict | None, list[dict]]:
    """(the run's identity, or None for an absent, empty or older file; its records, the last one of each question
    where a retry answered it again, in the order first seen). A last line cut short by a kill is dropped from the
    file (or, if only its newline is missing, completed)."""
    if not path.is_file():
        return None, []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    parsed = []
    for i, line in enumerate(lines):
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            if line.endswith("\n"):  # only the line being written when the run died may be partial
                raise InputError(f"{path}: line {i + 1} is not JSON; not a liteframe eval output") from None
    if lines and not lines[-1].endswith("\n"):
        kept = text + "\n" if len(parsed) == len(lines) else text[:len(text) - len(lines[-1])]
        atomic_write(path, lambda tmp: tmp.write_text(kept, encoding="utf-8"))
    identity = parsed[0]["run"] if parsed and "run" in parsed[0] else None
    records = {(r["benchmark"], r["question_id"]): r for r in parsed if "run" not in r}
    return identity, list(records.values())


def read_records(path: Path) -> list[dict]:
    """The records of the run file `path` (see `read_output`)."""
    return read_output(Path(path))[1]


def start_output(path: Path, identity: dict) -> None:
    """Begin the run file with the run's identity, unless it holds answers already (of this run: checked before)."""
    theirs, records = read_output(path)
    if not records and theirs != identity:
        write_output(path, identity, [])


def append_record(path: Path, record: dict) -> None:
    """One line, flushed to disk before the next question starts."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_output(path: Path, identity: dict, records: list[dict]) -> None:
    """Replace the run file at once (the identity, then `records`)."""
    lines = [json.dumps({"run": identity}), *(json.dumps(r) for r in records)]
    atomic_write(path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8"))


def mean_latency(records: list[dict]) -> dict[str, float]:
    """Mean of each `latency_ms` stage (`VideoLLM`'s `LATENCY_KEYS`) over the answered questions."""
    answered = [r["latency_ms"] for r in records if "error" not in r]
    return {k: statistics.mean(t[k] for t in answered) for k in answered[0]} if answered else {}
