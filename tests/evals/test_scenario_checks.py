"""Scenarios that can fail: an approver's edit must reach the email and the answer, a
canned playbook that ignores it fails, and the verifier's rejections drive a replan or the
``unverified`` end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import evals.runner
from app.llm.references import REFERENCE
from evals.metrics import score
from evals.runner import run_scenario
from evals.scenario import Scenario, load_suite

SUITE = {s.id: s for s in load_suite()}


@pytest.fixture
def observed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each run observed (its events among them), as the runner hands it to scoring."""
    seen: list[dict[str, Any]] = []

    def keep(scenario: Scenario, obs: dict[str, Any], gold: Any) -> dict[str, Any]:
        seen.append(obs)
        return score(scenario, obs, gold)

    monkeypatch.setattr(evals.runner, "score", keep)
    return seen


def _rows(obs: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return list(obs["after"][table].values())


async def test_an_edited_refund_reaches_the_email_the_ticket_and_the_answer(
        tmp_path: Path, observed: list[dict[str, Any]]) -> None:
    record = await run_scenario(SUITE["support-refund-edit"], "routed", 0, tmp_path)

    assert record["task_success"], record["problems"]
    (refund,) = _rows(observed[0], "refunds")
    (email,) = _rows(observed[0], "outbox")
    (note,) = _rows(observed[0], "ticket_updates")
    assert refund["amount_usd"] == 150.0
    assert "$150.00" in email["body"] and "189" not in email["body"]
    assert "$150.00" in note["note"]
    assert "$150.00" in record["final_answer"]


async def test_an_edited_scale_out_reaches_the_incident_update_and_the_answer(
        tmp_path: Path, observed: list[dict[str, Any]]) -> None:
    record = await run_scenario(SUITE["incident-scale-edit"], "routed", 0, tmp_path)

    assert record["task_success"], record["problems"]
    (update,) = _rows(observed[0], "incident_updates")
    assert "6 replicas" in update["message"] and "4 replicas" not in update["message"]
    assert "scaled to 6 replicas" in record["final_answer"]


def _canned(value: Any) -> Any:
    """A playbook value with every figure written in as $189.00, as the suite once had it."""
    if isinstance(value, dict):
        return {k: _canned(v) for k, v in value.items()}
    if not isinstance(value, str) or not REFERENCE.search(value):
        return value
    return 189.0 if REFERENCE.fullmatch(value) else REFERENCE.sub("189.00", value)


async def test_a_canned_playbook_that_ignores_the_edit_fails_the_scenario(
        tmp_path: Path) -> None:
    scenario = SUITE["support-refund-edit"]
    book = scenario.book()
    assert book is not None
    canned = [step.model_copy(update={
        "instruction": _canned(step.instruction), "report": _canned(step.report), "figures": {},
        "calls": [c.model_copy(update={"args": _canned(c.args)}) for c in step.calls]})
        for step in book.steps]
    stale = scenario.model_copy(update={"playbook": book.model_copy(update={
        "steps": canned, "final": _canned(book.final)})})

    record = await run_scenario(stale, "routed", 0, tmp_path)

    # The world is right (the approver's $150 was refunded); what was said of it is not.
    assert not record["task_success"]
    assert not any(p.startswith("refunds:") for p in record["problems"])
    for place in ("outbox.body of", "ticket_updates.note of",
                  "answer does not state refunds.amount_usd = 150.00"):
        assert any(p.startswith(place) for p in record["problems"]), (place, record["problems"])


def _verdicts(obs: dict[str, Any]) -> list[bool]:
    return [bool((e["data"].get("verdict") or {}).get("verified")) for e in obs["events"]
            if e["type"] == "verification"]


async def test_verifier_rejection_then_replan_then_success(
        tmp_path: Path, observed: list[dict[str, Any]]) -> None:
    record = await run_scenario(SUITE["support-verifier-reject-replan"], "routed", 0, tmp_path)

    assert record["task_success"], record["problems"]
    assert record["replans"] >= 1
    assert _verdicts(observed[0]) == [False, True]
    (email,) = _rows(observed[0], "outbox")  # the second attempt sent it, once
    assert "$189.00" in email["body"]


async def test_a_verifier_that_keeps_rejecting_ends_the_run_unverified(
        tmp_path: Path, observed: list[dict[str, Any]]) -> None:
    record = await run_scenario(SUITE["support-verifier-unverified"], "routed", 0, tmp_path)

    obs = observed[0]
    assert record["task_success"], record["problems"]
    assert record["stop_reason"] == "unverified" and record["status"] == "error"
    verdicts = _verdicts(obs)
    assert len(verdicts) >= 3 and not any(verdicts)
    assert _rows(obs, "outbox") == []
    # After a rejection the manager's next call is escalated for it.
    reasons = [e["data"]["route_reason"] for e in obs["events"] if e["type"] == "model_call"]
    assert any("after verifier_rejected" in r for r in reasons)
    assert "stopped before finishing (unverified)" in record["final_answer"]


def test_consistency_needs_one_world_figure_and_a_written_record_stating_it() -> None:
    from evals.scenario import Figure
    from evals.world import Snapshot, consistency

    before: Snapshot = {"refunds": {}, "outbox": {"M-1": {"id": "M-1", "body": "old mail"}}}
    after: Snapshot = {"refunds": {"R-1": {"id": "R-1", "order_id": "O-5002", "amount_usd": 150.0}},
             "outbox": {"M-1": {"id": "M-1", "body": "old mail"},
                        "M-2": {"id": "M-2", "body": "We refunded $150.00."}}}
    figure = Figure(table="refunds", column="amount_usd", where={"order_id": "O-5002"},
                    format="money", mentioned_in=["answer", "outbox.body"])

    # Only rows the run wrote count: the old email need not state the new figure.
    assert consistency([figure], before, after, "Refunded $150.00.") == []
    assert consistency([figure], before, after, "Refunded $189.00.") == [
        "answer does not state refunds.amount_usd = 150.00 (the final world's figure)"]
    assert consistency([figure], after, after, "Refunded $150.00.") == [
        "no outbox row was written to state 150.00"]
    none = figure.model_copy(update={"where": {"order_id": "O-5001"}})
    assert consistency([none], before, after, "")[0].startswith("world: refunds")
