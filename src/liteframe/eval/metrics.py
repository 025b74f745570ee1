"""Scoring one answer and aggregating a run, as lmms-eval aggregates each benchmark.

Video-MME: accuracy over all questions, and by duration, domain and task type. MLVU: accuracy per task type, and
overall the mean over task types (lmms-eval divides by its 7 dev task types; a run missing some divides by those it
has). LongVideoBench: accuracy overall (each question once) and by duration group and question category.
Failed questions (their video did not decode) are counted apart, never scored.
"""
from __future__ import annotations

import statistics
from collections import defaultdict

from liteframe.eval.datasets import LETTERS, Question
from liteframe.eval.parsing import extract_letter, guess, parse_longvideobench
from liteframe.timing import LATENCY_KEYS

GROUPS = {"videomme": ("duration", "domain", "task_type"), "videomme-sub": ("duration", "domain", "task_type"),
          "mlvu": ("task_type",), "longvideobench": ("duration_group", "question_category")}


def score(q: Question, raw: str) -> dict:
    """`{"prediction": letter or "", "correct": bool}` for the generated text `raw`; for LongVideoBench also
    `guess`, the seeded random letter scored in place of an unparsable answer."""
    if q.benchmark == "longvideobench":
        choices = LETTERS[:len(q.options)]
        prediction = parse_longvideobench(raw)
        if prediction:
            return {"prediction": prediction, "correct": prediction == q.answer}
        picked = guess(q.question_id, choices)
        return {"prediction": "", "guess": picked, "correct": picked == q.answer}
    prediction = extract_letter(raw, "ABCD")
    if q.benchmark == "mlvu":
        return {"prediction": prediction, "correct": prediction == q.answer}
    return {"prediction": prediction, "correct": prediction.lower() == q.answer.lower()}


def summarize(records: list[dict]) -> list[dict]:
    """Rows `{benchmark, group, questions, accuracy (%)}`: `overall` first, then `field=value` per group, then
    `failed` (questions whose video failed) if any."""
    rows = []
    for benchmark in sorted({r["benchmark"] for r in records}):
        mine = [r for r in records if r["benchmark"] == benchmark]
        answered = [r for r in mine if "error" not in r]
        groups = {}
        for name in GROUPS[benchmark]:
            split = defaultdict(list)
            for r in answered:
                split[r[name]].append(r["correct"])
            groups.update({f"{name}={value}": split[value] for value in sorted(split)})
        if benchmark == "mlvu":
            overall = statistics.mean(_pct(v) for v in groups.values()) if groups else 0.0
        else:
            overall = _pct([r["correct"] for r in answered])
        rows.append({"benchmark": benchmark, "group": "overall", "questions": len(answered), "accuracy": overall})
        rows += [{"benchmark": benchmark, "group": g, "questions": len(v), "accuracy": _pct(v)}
                 for g, v in groups.items()]
        failed = len(mine) - len(answered)
        if failed:
            rows.append({"benchmark": benchmark, "group": "failed", "questions": failed})
    return rows


def mean_latency(records: list[dict]) -> dict[str, float]:
    """Mean of each `latency_ms` key over the answered questions."""
    answered = [r["latency_ms"] for r in records if "error" not in r]
    return {k: statistics.mean(t[k] for t in answered) for k in LATENCY_KEYS} if answered else {}


def _pct(flags: list[bool]) -> float:
    return 100.0 * sum(flags) / len(flags) if flags else 0.0
