"""``foreman eval --live``: the scenarios against the configured real models.

No scripted behaviour and no mocked wire: every model call goes to the models that
``foreman.yaml`` routes to. Human decisions still come from each scenario, and each run is
scored on the world it leaves, exactly as offline. Scenarios whose faults are injected at
the mocked wire are skipped (a live provider cannot be told to fail). Runs go one at a
time, each bounded by the run's wall-clock budget, so a slow local model is not swamped.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from app.config.settings import Settings
from app.llm.router import is_offline
from evals.faults import raising_tools
from evals.metrics import score
from evals.report import git_sha
from evals.runner import HashingEmbedder, Human, answer_pauses
from evals.scenario import SUITE_DIR, Scenario, load_suite
from evals.world import gold_shape, prepare, snapshot

MAX_RESUMES = 12
PROMPT_DEFENCES = ("prompt defences: the configured models decide whether to follow "
                   "instructions planted in tool output (the offline suite's injection "
                   "figures measure the deterministic defences, with a scripted model that "
                   "always obeys)")


def live_settings(base: Settings, scenario: Scenario, data_dir: Path) -> Settings:
    """The configured models, online; the scenario's team options; a fresh data dir."""
    teams = dict(base.teams)
    team = teams[scenario.team]
    teams[scenario.team] = team.model_copy(update={
        "plan_review": scenario.plan_review,
        "limits": team.limits.model_copy(update=scenario.team_limits)})
    knowledge = base.knowledge.model_copy(update={"ingest_bundled": scenario.knowledge})
    routing = base.routing.model_copy(update={"cache": False})
    return base.model_copy(update={"data_dir": data_dir, "offline": False, "teams": teams,
                                   "knowledge": knowledge, "routing": routing})


async def run_live(scenario: Scenario, base: Settings, workdir: Path) -> dict[str, Any]:
    """One live run of a scenario, scored; never raises for what the model did."""
    from app.services import open_services

    data = workdir / scenario.id
    shutil.rmtree(data, ignore_errors=True)
    settings = live_settings(base, scenario, data)
    prepare(data / "sandbox.db", scenario.fixture)
    before = snapshot(data / "sandbox.db")
    human = Human(scenario)
    obs: dict[str, Any] = {"status": "error", "stop_reason": None, "events": []}
    limit = (settings.budgets.run_wall_s or 900.0) + 60
    started = time.perf_counter()
    with raising_tools(scenario.faults):
        async with open_services(settings, embedder=HashingEmbedder()) as s:
            try:
                result = await asyncio.wait_for(s.runner.start(
                    scenario.task, scenario.team, budget_usd=scenario.budget_usd), limit)
                result = await answer_pauses(s, human, result, limit,
                                             max_resumes=MAX_RESUMES)
                obs.update(status=result.status, stop_reason=result.stop_reason,
                           final_answer=result.final_answer, error=result.error,
                           events=s.store.events(result.run_id))
            except TimeoutError:
                obs["error"] = f"run exceeded {limit:.0f}s"
    obs.update(before=before, after=snapshot(data / "sandbox.db"), asked=human.asked,
               decisions=human.decisions, wall_s=round(time.perf_counter() - started, 3))
    record = score(scenario, obs, gold_shape(scenario, data))
    models = sorted({e["data"]["model"] for e in obs["events"] if e["type"] == "model_call"})
    record.update(policy="live", seed=0, models=models)
    shutil.rmtree(data, ignore_errors=True)
    return record


def live_eval(settings: Settings, suite: Path | None = None, report: Path = Path("eval-report"),
              pattern: str | None = None) -> int:
    """Run, print and write ``live.json`` / ``live.md``; 0 when every run passed, 1 if not,
    2 when there is no real model to run against or no scenario matches."""
    console = Console(highlight=False)
    if is_offline(settings):
        console.print("foreman eval --live: no real model is configured (offline, or a routed "
                      "model has no key); see docs/models.md and `foreman models check`")
        return 2
    scenarios = load_suite(suite or SUITE_DIR, pattern)
    live = [s for s in scenarios if not s.wire]
    skipped = [s.id for s in scenarios if s.wire]
    if not live:
        console.print(f"foreman eval --live: no scenario matches {pattern!r}")
        return 2
    roles = dict(settings.routing.roles)
    console.print(f"Live eval: {len(live)} scenarios, one at a time, on "
                  + "; ".join(f"{r} → {m}" for r, m in roles.items()))
    records = []
    with tempfile.TemporaryDirectory(prefix="foreman-live-") as tmp:
        for scenario in live:
            rec = asyncio.run(run_live(scenario, settings, Path(tmp)))
            records.append(rec)
            console.print(f"  {scenario.id}: {'pass' if rec['passed'] else 'FAIL'} "
                          f"({rec['status']}/{rec['stop_reason']}, {rec['model_calls']} calls, "
                          f"${rec['cost_usd']:.4f}, {rec['wall_s']:.0f}s)")
    meta = {"mode": "live", "models": roles, "injection_measures": PROMPT_DEFENCES,
            "git_sha": git_sha(Path(__file__).parents[1]),
            "skipped_wire_scenarios": skipped,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    paths = _write(report, records, meta)
    _print(console, records)
    console.print("Reports: " + ", ".join(str(p) for p in paths))
    return 0 if all(r["passed"] for r in records) else 1


def _write(folder: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    passed = sum(r["passed"] for r in records)
    data = {"meta": meta, "summary": {"runs": len(records), "passed": passed,
                                      "task_success": sum(r["task_success"] for r in records),
                                      "cost_usd": round(sum(r["cost_usd"] for r in records), 6)},
            "records": records}
    out_json = folder / "live.json"
    out_json.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    lines = ["# Foreman eval — live", "",
             "Models: " + "; ".join(f"`{r}` → `{m}`" for r, m in meta["models"].items()), "",
             f"{passed} of {len(records)} runs passed (git {meta['git_sha']}, {meta['created']}).",
             "", f"Injection scenarios here measure {PROMPT_DEFENCES}.", "",
             "| scenario | passed | task success | status | stop reason | calls | cost USD |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['scenario']} | {r['passed']} | {r['task_success']} | {r['status']} | "
              f"{r['stop_reason']} | {r['model_calls']} | {r['cost_usd']:.4f} |" for r in records]
    if meta["skipped_wire_scenarios"]:
        lines += ["", "Skipped (faults injected at the mocked wire): "
                  + ", ".join(meta["skipped_wire_scenarios"])]
    out_md = folder / "live.md"
    out_md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [out_json, out_md]


def _print(console: Console, records: list[dict[str, Any]]) -> None:
    table = Table(title="Live eval")
    for col in ("scenario", "passed", "status", "stop_reason", "model_calls", "cost_usd"):
        table.add_column(col)
    for r in records:
        table.add_row(r["scenario"], str(r["passed"]), r["status"], str(r["stop_reason"]),
                      str(r["model_calls"]), f"{r['cost_usd']:.4f}")
    console.print(table)
