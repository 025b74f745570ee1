"""`liteframe eval report`: several runs side by side, laid out like SPEC 8, and the accuracy-latency plot.

Runs with the same (model, encoder, frames, compression) make one row, whatever benchmarks they cover; a
benchmark's column is its lmms-eval overall accuracy, `avg` the mean of the row's benchmark columns. Latencies
are means over the row's answered questions: ViT, LLM prefill ("LLM ms", as SPEC 7 reports it) and total (decode,
preprocess, ViT, prefill and generation of one question).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from liteframe.errors import InputError
from liteframe.tables import format_table
from liteframe.eval.datasets import BENCHMARKS
from liteframe.eval.metrics import mean_latency, summarize
from liteframe.eval.runner import read_records

KEY = ("model", "encoder", "frames", "compression")


def report_rows(paths: list[str | Path]) -> list[dict]:
    """One row per setting found in the JSON-lines files `paths`, in the order first seen."""
    runs: dict[tuple, list[dict]] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such run file")
        records = read_records(path)
        if not records:
            raise InputError(f"{path}: no records")
        for r in records:
            runs.setdefault(tuple(r[k] for k in KEY), []).append(r)
    rows = []
    for key, records in runs.items():
        answered = [r for r in records if "error" not in r]
        latency = mean_latency(records)
        row = dict(zip(KEY, key))
        row["tokens/frame"] = (statistics.mean(r["visual_tokens"] for r in answered) / row["frames"]
                               if answered else None)
        row.update({"ViT ms": latency.get("vit"), "LLM ms": latency.get("llm_prefill"),
                    "total ms": latency.get("total")})
        accuracy = {s["benchmark"]: s["accuracy"] for s in summarize(records) if s["group"] == "overall"}
        row.update({b: accuracy.get(b) for b in BENCHMARKS})
        row["avg acc"] = statistics.mean(accuracy.values()) if accuracy else None
        row["failed"] = len(records) - len(answered)
        rows.append(row)
    return rows


def columns(rows: list[dict]) -> list[str]:
    """The table's columns: benchmarks that no row has are left out."""
    present = [b for b in BENCHMARKS if any(r[b] is not None for r in rows)]
    return ["model", "encoder", "frames", "compression", "tokens/frame", "ViT ms", "LLM ms", "total ms", *present,
            "avg acc", "failed"]


def render(rows: list[dict], as_json: bool = False) -> str:
    """The rows as JSON, or as a Markdown table with "-" where a run has no value."""
    if as_json:
        return json.dumps(rows, indent=2)
    return format_table([{k: "-" if v is None else v for k, v in r.items()} for r in rows], columns(rows))


def plot(rows: list[dict], path: str | Path) -> Path:
    """Average accuracy against total latency: one line per (model, encoder), points labelled by frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"--plot {path}: folder {path.parent} does not exist")
    fig, ax = plt.subplots(figsize=(6, 4))
    curves: dict[str, list[dict]] = {}
    for row in rows:
        if row["total ms"] is not None and row["avg acc"] is not None:
            curves.setdefault(f"{row['model']} {row['encoder']}", []).append(row)
    for name, points in curves.items():
        points.sort(key=lambda r: r["frames"])
        ax.plot([p["total ms"] for p in points], [p["avg acc"] for p in points], marker="o", label=name)
        for p in points:
            ax.annotate(str(p["frames"]), (p["total ms"], p["avg acc"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    ax.set_xlabel("total latency per question (ms)")
    ax.set_ylabel("average accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
