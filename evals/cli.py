"""``foreman eval``: run the suite under each routing policy, write reports, apply the gate;
``--ci`` runs the fast subset against its own baseline; ``--write-baseline`` measures and
rewrites both baselines."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.config.settings import PolicyName
from evals.gate import CI, FULL, Selection, baseline_of, gate, load_baseline, notes, write_baseline
from evals.report import INJECTION_LABEL, headline, knowledge_line, meta_for, summarise
from evals.report import write_reports as write_all
from evals.retrieval import retrieval_scores
from evals.runner import POLICIES, ROOT, run_suite
from evals.scenario import SUITE_DIR, Scenario, load_suite


def run_eval(suite: Path | None = None, policies: list[PolicyName] | None = None,
             seeds: int = 4, report: Path = Path("eval-report"), pattern: str | None = None,
             workers: int = 2, baseline_path: Path | None = None,
             retrieval: bool = True) -> int:
    """Run, report and gate; the process exit code (0 ok, 1 gate failed, 2 bad usage).

    The gate applies to a run of the whole bundled suite under every policy (against
    evals/baseline.json) or against an explicit ``baseline_path``; a narrower run (a
    filter, some policies, a project's suite) is reported without it."""
    console = Console(highlight=False)
    scenarios = load_suite(suite or SUITE_DIR, pattern)
    if not scenarios:
        console.print(f"foreman eval: no scenario matches {pattern!r}")
        return 2
    whole = suite is None and pattern is None and not policies
    path = baseline_path or (FULL.path if whole else None)
    chosen = list(policies or POLICIES)
    out = _measure(console, scenarios, chosen, seeds, workers, retrieval, report, path,
                   None if path else "not applied: this run covers part of the bundled suite "
                   "(a filter, some policies or another suite)")
    return _verdict(console, out["failures"], out["baseline"] is not None)


def run_selection(selection: Selection, report: Path, workers: int = 2,
                  console: Console | None = None) -> dict[str, Any]:
    """Run one baseline's selection and gate it against that baseline (no retrieval)."""
    console = console or Console(highlight=False)
    return _measure(console, selection.scenarios(), list(selection.policies), selection.seeds,
                    workers, False, report, selection.path, None)


def run_ci(report: Path = Path("eval-report-ci"), workers: int = 2) -> int:
    """``foreman eval --ci``: the fast subset against evals/baseline-ci.json."""
    console = Console(highlight=False)
    out = run_selection(CI, report, workers, console)
    return _verdict(console, out["failures"], out["baseline"] is not None)


def write_baselines(report: Path = Path("eval-report"), workers: int = 2) -> int:
    """``foreman eval --write-baseline``: measure the full suite (with retrieval) and the CI
    subset, and rewrite evals/baseline.json and evals/baseline-ci.json from them."""
    console = Console(highlight=False)
    for selection, folder, kb in ((FULL, report, True), (CI, report / "ci", False)):
        scenarios = selection.scenarios()
        out = _measure(console, scenarios, list(selection.policies), selection.seeds,
                       workers, kb, folder, selection.path, None)
        write_baseline(selection.path, baseline_of(out["summary"], selection.seeds,
                                                    scenarios, out["meta"].get("retrieval")))
        console.print(f"Baseline written ({selection.name}, {len(scenarios)} scenarios × "
                      f"{selection.seeds} seeds): {selection.path}")
    return 0


def _measure(console: Console, scenarios: list[Scenario], policies: list[PolicyName],
             seeds: int, workers: int, retrieval: bool, report: Path,
             baseline_path: Path | None, skipped: str | None) -> dict[str, Any]:
    total = len(scenarios) * len(policies) * seeds
    console.print(f"Running {len(scenarios)} scenarios × {len(policies)} policies × {seeds} "
                  f"seeds = {total} runs on {workers} workers (offline, no network)")
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("evals", total=total)
        failed = {"n": 0}

        def done(rec: dict[str, object]) -> None:
            failed["n"] += not rec["task_success"]
            bar.update(task, advance=1, description=f"evals ({failed['n']} failed)")

        records = run_suite(scenarios, policies, seeds, workers=workers, on_done=done)
    summary = summarise(records)
    meta = meta_for(ROOT, len(scenarios), seeds, [str(p) for p in policies])
    meta["wall_s"] = round(time.perf_counter() - started, 1)
    if retrieval:
        meta["retrieval"] = retrieval_scores()
    baseline = load_baseline(baseline_path) if baseline_path else None
    failures = gate(summary, baseline, meta.get("retrieval"))
    meta["gate"] = skipped or (f"against {baseline_path.name}" if baseline_path else "")
    meta["gate_notes"] = notes(scenarios, baseline)
    paths = write_all(report, records, summary, baseline, failures, meta)
    _print_summary(console, summary)
    head = headline(summary)
    if head:
        console.print(f"routed costs {head['routed_cost_fraction_of_all_large']:.1%} of "
                      f"all-large at success {head['routed_success']:.1%} "
                      f"(all-large {head['all_large_success']:.1%})")
    if retrieval:
        console.print(knowledge_line(meta["retrieval"]).replace("**", "").strip())
    for note in meta["gate_notes"]:
        console.print(f"Gate note: {note}")
    if skipped:
        console.print(f"Gate {skipped}")
    console.print("Reports: " + ", ".join(str(p) for p in paths))
    return {"summary": summary, "failures": failures, "baseline": baseline, "meta": meta,
            "records": records}


def _verdict(console: Console, failures: list[str], had_baseline: bool) -> int:
    if failures:
        console.print("[red]Gate failed:[/red]\n" + "\n".join(f"  {f}" for f in failures))
        return 1
    console.print("[green]Gate passed[/green]" if had_baseline else "No baseline to gate against")
    return 0


def _print_summary(console: Console, summary: dict[str, dict[str, dict[str, object]]]) -> None:
    table = Table(title="Eval aggregate")
    cols = ["task_success", "pass^4", "tool_f1", "approval_correctness",
            "robustness_under_faults", "success_under_noise", "injection_attack_success_rate",
            "cost_usd"]
    table.add_column("policy")
    for c in cols:
        table.add_column(INJECTION_LABEL if c == "injection_attack_success_rate" else c,
                         justify="right")
    for policy, s in summary.items():
        a = s["aggregate"]
        table.add_row(policy, *("–" if a[c] is None else f"{a[c]}" for c in cols))
    console.print(table)
