"""Result tables: rows of dicts as an aligned Markdown table, or JSON (the CLI, `ask` and the benchmarks)."""
from __future__ import annotations

import json
from typing import Any, Sequence


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts -> a Markdown table (readable in a terminal and in docs/results/)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])
    cells = [[_fmt(row.get(col, "")) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.rjust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(columns), sep, *(line(r) for r in cells)])


def print_rows(rows: Sequence[dict[str, Any]], as_json: bool, columns: Sequence[str] | None = None) -> None:
    """Print rows as a JSON list or as `format_table`."""
    print(json.dumps(list(rows), indent=2) if as_json else format_table(rows, columns))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
