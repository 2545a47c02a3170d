"""Scoring helpers: trajectory match modes, tool F1, argument accuracy, pass^k; what the
report says each figure measures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.metrics import arg_accuracy, pass_hat_k, tool_f1, trajectory_match
from evals.report import summarise, write_reports
from evals.scenario import Call, load_suite

REF = [Call(tool="lookup_order", args={"order_id": "O-5002"}),
       Call(tool="issue_refund", args={"order_id": "O-5002", "amount_usd": 189.0,
                                       "reason": "broken"})]
SAME = [("lookup_order", {"order_id": "O-5002"}),
        ("issue_refund", {"order_id": "O-5002", "amount_usd": 189.0, "reason": "worded apart"})]


@pytest.mark.parametrize(("mode", "actual", "expected"), [
    ("strict", SAME, True),
    ("strict", SAME[::-1], False),
    ("unordered", SAME[::-1], True),
    ("unordered", [*SAME, ("lookup_customer", {})], False),
    ("superset", [("lookup_customer", {}), *SAME], True),
    ("superset", SAME[:1], False),
    ("subset", SAME[:1], True),
    ("subset", [*SAME, ("send_email", {})], False),
])
def test_metrics_trajectory_modes(mode: str, actual: list, expected: bool) -> None:
    assert trajectory_match(mode, REF, actual) is expected


def test_metrics_tool_f1_and_argument_accuracy() -> None:
    wrong_amount = [SAME[0], ("issue_refund", {"order_id": "O-5002", "amount_usd": 18.9})]

    assert tool_f1(REF, SAME) == 1.0
    assert tool_f1(REF, [*SAME, ("send_email", {})]) == pytest.approx(0.8)
    assert arg_accuracy(REF, SAME) == 1.0
    assert arg_accuracy(REF, wrong_amount) == 0.5


def test_metrics_pass_hat_k_is_taus_estimator() -> None:
    assert pass_hat_k(4, 4, 4) == 1.0
    assert pass_hat_k(3, 4, 1) == 0.75
    assert pass_hat_k(3, 4, 2) == 0.5
    assert pass_hat_k(3, 4, 4) == 0.0
    assert pass_hat_k(2, 3, 4) is None


def test_metrics_suite_covers_every_category_across_both_teams() -> None:
    suite = load_suite()
    categories = {s.category for s in suite}

    assert len(suite) >= 40
    assert {s.team for s in suite} == {"support", "incident"}
    assert categories >= {
        "happy_path", "fan_out", "approval_approve", "approval_reject", "approval_edit",
        "approval_expiry", "plan_review", "budget", "malformed_ledger", "unknown_agent",
        "hallucinated_tool", "invalid_args", "provider_429", "provider_500",
        "provider_timeout", "truncated_stream", "tool_exception", "prompt_injection",
        "loop_replan", "cheap_model_fails"}


def test_metrics_report_says_what_injection_and_knowledge_figures_measure(
        tmp_path: Path) -> None:
    record = {"scenario": "support-injection-denied", "category": "prompt_injection",
              "policy": "routed", "seed": 0, "task_success": True, "passed": True,
              "approvals_ok": True, "within_limits": True, "attack_success": False,
              "trajectory_match": True, "tool_f1": 1.0, "arg_accuracy": 1.0, "rounds": 3,
              "replans": 0, "model_calls": 8, "calls_by_role": {}, "ledger_rounds": 3,
              "ledger_parse_failures": 0, "prompt_tokens": 10, "completion_tokens": 5,
              "cost_usd": 0.01, "wall_s": 1.0, "faults": [], "noise_slips": 1,
              "problems": []}
    summary = summarise([record])
    kb = {"embedder": "e5", "questions": 38, "recall_at_1": 0.6, "recall_at_5": 0.947,
          "mrr": 0.756, "p95_query_ms": 12.0}
    meta = {"scenarios": 1, "seeds": 1, "git_sha": "x" * 12, "created": "now",
            "retrieval": kb, "gate": "against baseline.json", "gate_notes": []}
    write_reports(tmp_path, [record], summary, None, [], meta)
    text = (tmp_path / "eval-report.md").read_text()
    data = json.loads((tmp_path / "eval-report.json").read_text())

    header = next(line for line in text.splitlines() if line.startswith("| policy |"))
    assert "injection success, deterministic defences (scripted obedient model)" in header
    assert "`foreman eval --live`" in text and "prompt defences" in text
    assert "recall@5 **0.947**, MRR **0.756**" in text
    assert data["meta"]["retrieval"]["mrr"] == 0.756
    assert "deterministic defences" in data["measures"]["injection_attack_success_rate"]
    assert summary["routed"]["aggregate"]["success_under_noise"] == 1.0
