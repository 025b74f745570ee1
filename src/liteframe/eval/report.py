"""`liteframe eval report`: several runs side by side, laid out like SPEC 8, and the accuracy-latency plot.

Runs with the same (model, encoder, frames, compression) make one row, whatever benchmarks they cover; a
benchmark's column is its overall accuracy (`Task.aggregate`), `avg acc` the mean of the row's benchmark columns,
`partial` names a benchmark whose run does not cover it whole (MLVU short of task types) with lmms-eval's figure
for it. Latencies are means over the row's answered questions: ViT, LLM prefill ("LLM ms", as SPEC 7 reports it)
and total (decode, preprocess, ViT, prefill and generation of one question).
"""
from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

from liteframe.errors import InputError
from liteframe.eval.records import mean_latency, read_records
from liteframe.eval.tasks import TASKS
from liteframe.tables import format_table

KEY = ("model", "encoder", "frames", "compression")
SHORT = {"videomme": "VM", "videomme-sub": "VM+sub", "mlvu": "MLVU", "longvideobench": "LVB"}  # plot labels


def report_rows(paths: list[str | Path]) -> list[dict]:
    """One row per setting found in the run files `paths`, in the order first seen."""
    runs: dict[tuple, dict[tuple, dict]] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such run file")
        records = read_records(path)
        if not records:
            raise InputError(f"{path}: no records")
        for r in records:
            runs.setdefault(tuple(r[k] for k in KEY), {})[(r["benchmark"], r["question_id"])] = r
    rows = []
    for key, by_question in runs.items():
        records = list(by_question.values())
        answered = [r for r in records if "error" not in r]
        latency = mean_latency(records)
        row = dict(zip(KEY, key))
        row["tokens/frame"] = (statistics.mean(r["visual_tokens"] for r in answered) / row["frames"]
                               if answered else None)
        row.update({"ViT ms": latency.get("vit"), "LLM ms": latency.get("llm_prefill"),
                    "total ms": latency.get("total")})
        overall = {b: TASKS.get(b).aggregate([r for r in records if r["benchmark"] == b])[0]
                   for b in TASKS.names() if any(r["benchmark"] == b for r in answered)}
        row.update({b: overall[b]["accuracy"] if b in overall else None for b in TASKS.names()})
        row["avg acc"] = statistics.mean(o["accuracy"] for o in overall.values()) if overall else None
        row["partial"] = "; ".join(f"{b} {o['partial']} (lmms-eval {o['lmms-eval']:.1f})"
                                   for b, o in overall.items() if "partial" in o) or None
        row["failed"] = len(records) - len(answered)
        rows.append(row)
    return rows


def columns(rows: list[dict]) -> list[str]:
    """The table's columns: benchmarks that no row has, and `partial` when no row is, are left out."""
    present = [b for b in TASKS.names() if any(r[b] is not None for r in rows)]
    partial = ["partial"] if any(r["partial"] for r in rows) else []
    return ["model", "encoder", "frames", "compression", "tokens/frame", "ViT ms", "LLM ms", "total ms", *present,
            "avg acc", *partial, "failed"]


def render(rows: list[dict], as_json: bool = False) -> str:
    """The rows as JSON, or as a Markdown table with "-" where a run has no value."""
    if as_json:
        return json.dumps(rows, indent=2)
    return format_table([{k: "-" if v is None else v for k, v in r.items()} for r in rows], columns(rows))


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For each (latency, accuracy) point, whether it is on the Pareto frontier: no other point is at most as slow
    and at least as accurate, and strictly better in one of the two."""
    return [not any(x2 <= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in points) for x, y in points]


def figure(rows: list[dict]):
    """Average accuracy against total latency. Per (model, encoder): every run a point, the Pareto frontier a line
    (points off it are drawn, not joined); each point labelled with its frames and the benchmarks it averages."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves: dict[str, list[dict]] = {}
    for row in rows:
        if row["total ms"] is not None and row["avg acc"] is not None:
            curves.setdefault(f"{row['model']} {row['encoder']}", []).append(row)
    colours = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for (name, points), colour in zip(curves.items(), colours):
        xy = [(p["total ms"], p["avg acc"]) for p in points]
        ax.scatter(*zip(*xy), color=colour, label=name, zorder=3)
        front = sorted(point for point, on in zip(xy, pareto(xy)) if on)
        ax.plot(*zip(*front), color=colour, zorder=2)
        for p, (x, y) in zip(points, xy):
            ax.annotate(f"{p['frames']}f {_benchmarks(p)}", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.set_title("Accuracy against latency: Pareto frontier per encoder")
    ax.set_xlabel("total latency per question (ms)")
    ax.set_ylabel("average accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, "labels: frames, benchmarks averaged (VM Video-MME, VM+sub with subtitles, LVB "
             "LongVideoBench; * partial)", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _benchmarks(row: dict) -> str:
    """The benchmarks a row's average covers, e.g. `VM,VM+sub,MLVU*` (* partial)."""
    partial = {part.split(" ")[0] for part in (row["partial"] or "").split("; ")}
    return ",".join(SHORT[b] + "*" * (b in partial) for b in TASKS.names() if row[b] is not None)


def plot(rows: list[dict], path: str | Path) -> Path:
    """`figure(rows)` saved at `path`, as PNG or another format matplotlib writes (by the name's suffix)."""
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"--plot {path}: folder {path.parent} does not exist")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix and path.suffix[1:].lower() not in formats:
        raise InputError(f"--plot {path}: matplotlib cannot write {path.suffix} files; name a .png (or "
                         f"{', '.join(sorted(formats))})")
    fig = figure(rows)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
