"""The printed table and bench-results.json."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evals.bench.stats import Row


def table(rows: Sequence[Row]) -> Table:
    """One line per figure row: value, baseline, ratio, goal and whether it is met."""
    t = Table(title="Foreman benchmarks (median, min-max over repetitions)", show_lines=False)
    for name in ("figure", "measure", "value", "baseline", "ratio", "goal", "met"):
        t.add_column(name, overflow="fold")
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        t.add_row(r.figure, r.label, f"{r.value.fmt()} {r.unit}",
                  f"{r.baseline.fmt()} ({r.baseline_label})" if r.baseline else "",
                  f"{r.ratio.fmt()}x" if r.ratio else "", r.goal, met)
    return t


def write(rows: Sequence[Row], path: Path, seconds: float, reps: int) -> None:
    """Every row with its samples' stats and details, plus where it was measured."""
    payload = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": __import__("os").cpu_count()},
        "repetitions": reps,
        "bench_seconds": round(seconds, 1),
        "goals": {"met": sum(1 for r in rows if r.met is True),
                  "missed": [f"{r.figure}: {r.label}" for r in rows if r.met is False]},
        "rows": [r.as_json() for r in rows],
    }
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def show(rows: Sequence[Row]) -> None:
    """Print the table to stdout."""
    Console(width=160).print(table(rows))
