"""Controls that keep the suite honest: gold replays score 1, mutated replays score 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evals.metrics import score
from evals.scenario import Call, Scenario, load_suite
from evals.world import gold_shape, prepare, replay, snapshot, writes

SCENARIOS = load_suite()
EXTRA_WRITE = {
    "support": Call(tool="issue_refund", args={"order_id": "O-5003", "amount_usd": 10.0,
                                                "reason": "an extra refund"}),
    "incident": Call(tool="restart_service", args={"service": "inventory-api"}),
}


def replayed(s: Scenario, actions: list[Call], tmp: Path,
             gold: dict[str, tuple[int, int, int]] | None = None) -> dict[str, Any]:
    db = tmp / "replay.db"
    prepare(db, s.fixture)
    before = snapshot(db)
    replay(db, actions, key="replay")
    answer = s.reference.answer or " ".join(s.expect.answer_mentions)
    return score(s, {"status": s.expect.status, "stop_reason": s.expect.stop_reason[0],
                     "final_answer": answer, "before": before, "after": snapshot(db),
                     "asked": s.expect.approvals,
                     "events": [{"type": "tool_called", "data": {"tool": a.tool, "args": a.args}}
                                for a in actions]}, gold or gold_shape(s, tmp))


def wrong(action: Call) -> Call:
    """The same call with one argument that matters changed."""
    args = dict(action.args)
    for key in ("amount_usd", "replicas"):
        if key in args:
            args[key] = float(args[key]) + 1 if key == "amount_usd" else int(args[key]) + 1
            return Call(tool=action.tool, args=args)
    swaps = {"C-1001": "C-1002", "C-1002": "C-1003", "C-1003": "C-1001", "T-9001": "T-9002",
             "T-9002": "T-9003", "T-9003": "T-9001", "O-5001": "O-5003", "O-5002": "O-5003",
             "O-5004": "O-5003", "checkout-api": "search-api", "search-api": "checkout-api",
             "payments-worker": "checkout-api", "inventory-api": "checkout-api",
             "mitigated": "resolved", "resolved": "mitigated"}
    for key in ("status", "customer_id", "ticket_id", "order_id", "service"):
        if args.get(key) in swaps:
            args[key] = swaps[args[key]]
            return Call(tool=action.tool, args=args)
    raise AssertionError(f"no argument of {action.tool} to mutate")


@pytest.mark.parametrize("s", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_controls_gold_replay_scores_one(s: Scenario, tmp_path: Path) -> None:
    record = replayed(s, s.reference.actions, tmp_path)

    assert record["task_success"], record["problems"]
    assert record["trajectory_match"]


@pytest.mark.parametrize("s", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_controls_mutated_replays_score_zero(s: Scenario, tmp_path: Path) -> None:
    actions = s.reference.actions
    mutants: dict[str, list[Call]] = {"extra write": [*actions, EXTRA_WRITE[s.team]]}
    for i in writes(s):
        mutants[f"dropped {actions[i].tool}"] = actions[:i] + actions[i + 1:]
        mutants[f"wrong argument to {actions[i].tool}"] = [
            *actions[:i], wrong(actions[i]), *actions[i + 1:]]

    gold = gold_shape(s, tmp_path)
    for name, mutant in mutants.items():
        record = replayed(s, mutant, tmp_path, gold)
        assert not record["task_success"], f"{name} still scored 1"
