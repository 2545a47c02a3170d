"""The baseline gate: the fast subset holds its committed baseline (this is the CI gate that
``make test`` runs), and the gate fails on a deleted, renamed or shrunk scenario set, on
fewer trials, on a left-out policy and on a drop in the figures."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from evals.cli import run_eval, run_selection
from evals.gate import CI, CI_SCENARIOS, FULL, baseline_of, gate, load_baseline, notes
from evals.report import summarise
from evals.scenario import load_suite


def _record(sid: str, policy: str, seed: int, ok: bool, cost: float = 0.01) -> dict[str, Any]:
    return {"scenario": sid, "category": "happy_path", "policy": policy, "seed": seed,
            "task_success": ok, "passed": ok, "approvals_ok": True, "within_limits": True,
            "attack_success": None, "trajectory_match": True, "tool_f1": 1.0,
            "arg_accuracy": 1.0, "rounds": 3, "replans": 0, "model_calls": 8,
            "calls_by_role": {}, "ledger_rounds": 3, "ledger_parse_failures": 0,
            "prompt_tokens": 100, "completion_tokens": 10, "cost_usd": cost, "wall_s": 1.0,
            "faults": [], "noise_slips": 0}


IDS = ["support-refund-approve", "support-refund-reject", "incident-restart-expire"]


def _records(ids: list[str] = IDS, seeds: int = 4, fail: tuple[str, int] | None = None,
             cost: float = 0.01) -> list[dict[str, Any]]:
    return [_record(sid, p, k, (sid, k) != fail, cost) for p in ("routed", "all-large")
            for sid in ids for k in range(seeds)]


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    scenarios = [s for s in load_suite() if s.id in IDS]
    return baseline_of(summarise(_records()), 4, scenarios,
                       {"recall_at_5": 0.95, "mrr": 0.75})


def test_gate_passes_a_run_that_matches_its_baseline(base: dict[str, Any]) -> None:
    assert gate(summarise(_records()), base, {"recall_at_5": 0.95, "mrr": 0.75}) == []


def test_gate_fails_when_a_scenario_is_deleted(base: dict[str, Any]) -> None:
    failures = gate(summarise(_records(IDS[:2])), base)

    assert "routed: scenario incident-restart-expire is missing (deleted or renamed)" \
        in failures
    assert "routed: 2 scenarios, the baseline has 3" in failures


def test_gate_fails_when_a_scenario_is_renamed(base: dict[str, Any]) -> None:
    renamed = [*IDS[:2], "incident-restart-expire-v2"]
    failures = gate(summarise(_records(renamed)), base)

    assert "all-large: scenario incident-restart-expire is missing (deleted or renamed)" \
        in failures


def test_gate_fails_on_fewer_trials(base: dict[str, Any]) -> None:
    failures = gate(summarise(_records(seeds=2)), base)

    assert "routed: support-refund-approve ran 2 trials, the baseline 4" in failures
    assert "routed: pass^4 not measured (too few trials)" in failures


def test_gate_fails_when_a_policy_is_left_out(base: dict[str, Any]) -> None:
    only_routed = [r for r in _records() if r["policy"] == "routed"]
    assert gate(summarise(only_routed), base) == ["all-large: not run, but the baseline has it"]


def test_gate_fails_on_a_drop_in_success_pass_k_and_on_a_cost_rise(
        base: dict[str, Any]) -> None:
    failures = gate(summarise(_records(fail=("support-refund-reject", 2), cost=0.012)), base)

    assert "routed: support-refund-reject success 1.00 → 0.75" in failures
    assert "routed: success 1.000 → 0.917" in failures
    assert "routed: pass^4 1.000 → 0.667" in failures
    assert any(f.startswith("routed: cost $0.0300 → $0.0360 (+20%") for f in failures)


def test_gate_fails_on_a_drop_in_retrieval(base: dict[str, Any]) -> None:
    failures = gate(summarise(_records()), base, {"recall_at_5": 0.89, "mrr": 0.75})
    assert failures == ["knowledge recall_at_5 0.950 → 0.890"]


def test_gate_refuses_an_old_format_baseline() -> None:
    old = {"seeds": 4, "policies": {"routed": {"support-refund-approve": {"success": 1.0,
                                                                          "cost_usd": 0.01}}}}
    [failure] = gate(summarise(_records()), old)
    assert "rewrite it with `foreman eval --write-baseline`" in failure


def test_gate_notes_new_and_changed_scenarios(base: dict[str, Any]) -> None:
    changed = copy.deepcopy(base)
    changed["scenarios"]["support-refund-approve"]["sha256"] = "0" * 16
    scenarios = [s for s in load_suite() if s.id in [*IDS, "support-refund-edit"]]

    assert notes(scenarios, changed) == ["new since the baseline: support-refund-edit",
                                         "changed since the baseline: support-refund-approve"]


def test_gate_committed_baselines_cover_the_suite() -> None:
    full, ci = load_baseline(FULL.path), load_baseline(CI.path)
    assert full is not None and ci is not None
    ids = {s.id for s in load_suite()}

    assert set(CI_SCENARIOS) <= ids
    assert set(ci["scenarios"]) == set(CI_SCENARIOS) and ci["seeds"] == CI.seeds
    assert set(full["scenarios"]) <= ids and full["count"] == len(full["scenarios"])
    assert set(full["policies"]) == set(ci["policies"]) == {"all-small", "routed", "all-large"}


def test_gate_ci_subset_holds_its_committed_baseline(tmp_path: Path) -> None:
    out = run_selection(CI, tmp_path, workers=2)
    report = json.loads((tmp_path / "eval-report.json").read_text())

    assert out["baseline"] is not None
    assert out["failures"] == [], "\n".join(out["failures"])
    assert report["meta"]["gate"] == "against baseline-ci.json"
    assert {r["scenario"] for r in out["records"]} == set(CI_SCENARIOS)


def test_gate_is_not_applied_to_a_filtered_run(tmp_path: Path) -> None:
    code = run_eval(policies=["routed"], seeds=1, report=tmp_path,
                    pattern="support-plan-review-reject", workers=0, retrieval=False)
    report = json.loads((tmp_path / "eval-report.json").read_text())

    assert code == 0 and report["gate_failures"] == []
    assert report["meta"]["gate"].startswith("not applied: this run covers part")
    assert "not applied" in (tmp_path / "eval-report.md").read_text()
