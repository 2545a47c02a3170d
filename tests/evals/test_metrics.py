"""Scoring helpers: trajectory match modes, tool F1, argument accuracy, pass^k."""

from __future__ import annotations

import pytest

from evals.metrics import arg_accuracy, pass_hat_k, tool_f1, trajectory_match
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
