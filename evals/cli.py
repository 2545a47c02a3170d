"""``foreman eval``: run the suite under each routing policy, write reports, apply the gate."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.settings import PolicyName
from evals.report import (
    BASELINE,
    baseline_of,
    gate,
    headline,
    load_baseline,
    meta_for,
    summarise,
    write_reports,
)
from evals.retrieval import retrieval_scores
from evals.runner import POLICIES, ROOT, run_suite
from evals.scenario import SUITE_DIR, load_suite


def run_eval(suite: Path | None = None, policies: list[PolicyName] | None = None,
             seeds: int = 4, report: Path = Path("eval-report"), pattern: str | None = None,
             workers: int = 2, baseline_path: Path = BASELINE,
             update_baseline: bool = False, retrieval: bool = True) -> int:
    """Run, report and gate; the process exit code (0 ok, 1 gate failed, 2 bad usage)."""
    console = Console(highlight=False)
    scenarios = load_suite(suite or SUITE_DIR, pattern)
    if not scenarios:
        console.print(f"foreman eval: no scenario matches {pattern!r}")
        return 2
    chosen = list(policies or POLICIES)
    total = len(scenarios) * len(chosen) * seeds
    console.print(f"Running {len(scenarios)} scenarios × {len(chosen)} policies × {seeds} "
                  f"seeds = {total} runs on {workers} workers (offline, no network)")
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("evals", total=total)
        failed = {"n": 0}

        def done(rec: dict[str, object]) -> None:
            failed["n"] += not rec["task_success"]
            bar.update(task, advance=1, description=f"evals ({failed['n']} failed)")

        records = run_suite(scenarios, chosen, seeds, workers=workers, on_done=done)
    summary = summarise(records)
    baseline = load_baseline(baseline_path)
    failures = gate(summary, baseline)
    meta = meta_for(ROOT, len(scenarios), seeds, [str(p) for p in chosen])
    meta["wall_s"] = round(time.perf_counter() - started, 1)
    if retrieval:
        meta["retrieval"] = retrieval_scores()
    paths = write_reports(report, records, summary, baseline, failures, meta)
    _print_summary(console, summary)
    head = headline(summary)
    if head:
        console.print(f"routed costs {head['routed_cost_fraction_of_all_large']:.1%} of "
                      f"all-large at success {head['routed_success']:.1%} "
                      f"(all-large {head['all_large_success']:.1%})")
    console.print("Reports: " + ", ".join(str(p) for p in paths))
    if update_baseline:
        baseline_path.write_text(json.dumps(baseline_of(summary, seeds), indent=1,
                                            sort_keys=True) + "\n", encoding="utf-8")
        console.print(f"Baseline written: {baseline_path}")
        return 0
    if failures:
        console.print("[red]Gate failed:[/red]\n" + "\n".join(f"  {f}" for f in failures))
        return 1
    console.print("[green]Gate passed[/green]" if baseline else "No baseline to gate against")
    return 0


def _print_summary(console: Console, summary: dict[str, dict[str, dict[str, object]]]) -> None:
    table = Table(title="Eval aggregate")
    cols = ["task_success", "pass^4", "tool_f1", "approval_correctness",
            "robustness_under_faults", "injection_attack_success_rate", "cost_usd"]
    table.add_column("policy")
    for c in cols:
        table.add_column(c, justify="right")
    for policy, s in summary.items():
        a = s["aggregate"]
        table.add_row(policy, *("–" if a[c] is None else f"{a[c]}" for c in cols))
    console.print(table)
