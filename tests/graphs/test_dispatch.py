"""Step ids are Foreman's: proposed steps land on the right plan entry, or visibly as new."""

from __future__ import annotations

from typing import Any

import pytest

from graphs.dispatch import AUTO_REASON, auto_dispatch, ready_steps, resolve
from graphs.ledger import NextStepOut, ProgressLedgerOut

AGENTS = ["researcher", "billing", "communications", "ticketing"]
PLAN: list[Any] = [
    {"id": "S1", "agent": "researcher", "goal": "Confirm the customer, the order and the ticket",
     "depends_on": []},
    {"id": "S2", "agent": "billing", "goal": "Refund order O-5002 in full", "depends_on": ["S1"]},
    {"id": "S3", "agent": "communications", "goal": "Tell the customer about the refund",
     "depends_on": ["S2"]},
    {"id": "S4", "agent": "ticketing", "goal": "Close the ticket with a note",
     "depends_on": ["S2"]},
]
S1_DONE: list[Any] = [{"round": 1, "step_id": "S1", "agent": "researcher", "instruction": "x",
                       "summary": "ok", "ok": True, "tools": [], "fingerprint": "f"}]

# (how the model wrote the step, the plan step it must land on)
GARBLED = [
    ({"agent": "billing", "instruction": "Refund O-5002"}, "S2"),  # no id at all
    ({"step_id": "", "agent": "billing", "instruction": "Refund O-5002"}, "S2"),
    ({"step_id": None, "agent": "billing", "instruction": "Refund O-5002"}, "S2"),
    ({"step_id": 2, "agent": "billing", "instruction": "Refund O-5002"}, "S2"),
    ({"step_id": "s2", "agent": "billing", "instruction": "Refund O-5002"}, "S2"),
    ({"step_id": "Step 2", "agent": "billing", "instruction": "Refund O-5002"}, "S2"),
    ({"step_id": "S-2", "agent": "billing", "instruction": "Refund O-5002"}, "S2"),
    ({"step_id": "S02", "agent": "billing", "instruction": "Refund O-5002"}, "S2"),
    ({"step_id": "X1", "agent": "billing", "instruction": "Refund O-5002"}, "S2"),
    ({"step_id": "S9", "agent": "billing", "instruction": "Refund O-5002"}, "S2"),
    ({"step_id": "S3", "agent": "billing", "instruction": "Refund O-5002"}, "S2"),  # wrong owner
    ({"id": "S2", "agent": "billing", "instruction": "Refund O-5002"}, "S2"),  # "id" key
    ({"step": "2", "agent": "billing", "instruction": "Refund O-5002"}, "S2"),  # "step" key
    ({"step_id": "S2", "instruction": "Refund O-5002"}, "S2"),  # no agent: the plan's owner
    ({"step_id": "S2: refund the order", "agent": "Billing", "instruction": "Refund"}, "S2"),
]


@pytest.mark.parametrize(("raw", "expected"), GARBLED)
def test_dispatch_garbled_step_ids_land_on_the_plan_entry(raw: dict[str, Any],
                                                          expected: str) -> None:
    proposed = NextStepOut.model_validate(raw)
    out = resolve([proposed], PLAN, AGENTS, S1_DONE, 4)
    assert [s["step_id"] for s in out.steps] == [expected]
    assert out.steps[0]["agent"] == "billing"
    assert not out.added
    if proposed.step_id != expected:  # the model's id was not the plan's: shown as a match
        assert any(e[0] == "step_matched" and e[1]["step_id"] == expected for e in out.events)


def test_dispatch_garbled_ids_count() -> None:
    assert len(GARBLED) >= 10


def test_dispatch_step_with_no_plan_entry_is_added_visibly() -> None:
    out = resolve([NextStepOut(step_id="D1", agent="researcher",
                               instruction="Double-check the records")],
                  PLAN, AGENTS, S1_DONE, 4)
    assert [s["id"] for s in out.added] == ["S5"]
    assert out.steps[0]["step_id"] == "S5"
    assert out.events[0] == ("step_added", {"step_id": "S5", "agent": "researcher",
                                            "goal": "Double-check the records",
                                            "proposed_id": "D1"})


def test_dispatch_step_with_unmet_dependencies_is_held_back() -> None:
    out = resolve([NextStepOut(step_id="S3", agent="communications",
                               instruction="Email the customer")], PLAN, AGENTS, S1_DONE, 4)
    assert out.steps == [] and out.deferred == 1
    assert out.events == [("step_deferred", {
        "step_id": "S3", "agent": "communications", "waiting_on": ["S2"],
        "reason": "it depends on S2, not done yet"})]
    assert "step S3 (communications) was not dispatched" in out.notes[0]


def test_dispatch_ready_steps_run_in_plan_order_bounded() -> None:
    done = [*S1_DONE, {**S1_DONE[0], "step_id": "S2"}]
    ready = ready_steps(PLAN, done, since=0)
    assert [s["id"] for s in ready] == ["S3", "S4"]
    out = auto_dispatch(ready, "the task", limit=1)
    assert [s["step_id"] for s in out.steps] == ["S3"]
    assert out.events == [("step_dispatched", {"step_id": "S3", "agent": "communications",
                                                "reason": AUTO_REASON})]


def test_dispatch_progress_ledger_tolerates_loose_shapes() -> None:
    parsed = ProgressLedgerOut.model_validate({
        "is_request_satisfied": {"answer": "no"}, "is_in_loop": {"answer": False},
        "is_progress_being_made": {"answer": "yes"}, "next_steps": None,
        "drop_steps": ["S4"]})
    assert parsed.next_steps == [] and parsed.drop_steps[0].step_id == "S4"
