"""What a restart does with a run the last process left half-recorded: a decision committed
just before it died is applied (the run neither sticks as interrupted nor asks again for
what was decided), and a run whose graph had ended is finished, not started over."""

from __future__ import annotations

from typing import Any

import pytest

from app.api.auth import Principal
from app.config.settings import Settings
from app.governance.resumers import InlineResume
from app.runs.broker import EventBroker
from app.runs.run_manager import RunManager
from app.runs.runner import RunResult
from app.services import Services, open_services

BOB = Principal("bob", "acme", frozenset({"approver"}), groups=frozenset({"support-leads"}))
TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


async def paused(s: Services) -> tuple[RunResult, str]:
    result = await s.runner.start(TASK, "support", tenant="acme", created_by="alice")
    assert result.status == "interrupted"
    (row,) = s.store.run_approvals(result.run_id)
    return result, row.id


def settle(s: Services, approval_id: str, decision: str, **extra: Any) -> None:
    """What the approvals service commits before it resumes the run."""
    row = s.store.get_approval(approval_id)
    assert row is not None
    event = {"interrupt_id": row.interrupt_id, "approval_id": row.id, "decision": decision,
             "by": "bob", "message": "", "args_sha256": row.args_sha256, **extra}
    assert s.store.settle_approval(row.id, "decided", decision, "bob", "", event) is not None


@pytest.mark.parametrize("then_pending", [False, True], ids=["interrupted", "pending"])
async def test_a_settled_approval_is_applied_by_recovery_at_the_next_start(
        policy_settings: Settings, sandbox_rows: Any, then_pending: bool) -> None:
    async with open_services(policy_settings) as s:
        result, approval_id = await paused(s)
        settle(s, approval_id, "approve")
        if then_pending:  # the process died after marking the run for its resume
            s.store.update_run(result.run_id, status="pending")
    async with open_services(policy_settings) as s:  # the restart
        manager = RunManager(s, EventBroker())
        assert manager.recover() == [result.run_id]
        run = await manager.wait(result.run_id)
        approvals = s.store.run_approvals(result.run_id)
        await manager.close()

    assert (run.status, run.stop_reason) == ("success", "satisfied")
    assert [(a.id, a.status) for a in approvals] == [(approval_id, "decided")]
    assert sandbox_rows("SELECT order_id, amount_usd FROM refunds") == [
        {"order_id": "O-5002", "amount_usd": 189.0}]


async def test_a_settled_edit_resumes_with_the_edited_arguments(
        policy_settings: Settings, sandbox_rows: Any) -> None:
    async with open_services(policy_settings) as s:
        result, approval_id = await paused(s)
        row = s.store.get_approval(approval_id)
        assert row is not None
        settle(s, approval_id, "edit", args={**row.args, "amount_usd": 120.0})
        decisions = s.store.settled_decisions(result.run_id, [row.interrupt_id, "other"])
        done = await s.runner.resume(result.thread_id)  # a resume with no decision given

    assert decisions == {row.interrupt_id: {"decision": "edit", "message": "",
                                            "args": {**row.args, "amount_usd": 120.0}}}
    assert done.status == "success"
    assert sandbox_rows("SELECT order_id, amount_usd FROM refunds") == [
        {"order_id": "O-5002", "amount_usd": 120.0}]


async def test_a_pending_approval_is_not_picked_up_by_recovery(
        policy_settings: Settings) -> None:
    async with open_services(policy_settings) as s:
        result, approval_id = await paused(s)
        row = s.store.get_approval(approval_id)
        assert row is not None and row.status == "pending"
        assert s.store.runs_awaiting_resume() == []
        assert s.store.settled_decisions(result.run_id, [row.interrupt_id]) == {}
        manager = RunManager(s, EventBroker())
        assert manager.recover() == []
        assert s.store.get_run(result.run_id).status == "interrupted"  # type: ignore[union-attr]


async def test_a_run_whose_graph_ended_before_its_status_was_written_is_finished_not_redone(
        policy_settings: Settings, sandbox_rows: Any) -> None:
    async with open_services(policy_settings) as s:
        result, approval_id = await paused(s)
        resumer = InlineResume(s.runner)
        await s.approvals.decide(BOB, approval_id, "approve", resumer)
        assert resumer.result is not None and resumer.result.status == "success"
        calls = s.store.totals(result.run_id).calls
        # The process died after the last checkpoint, before the run row was updated.
        s.store.update_run(result.run_id, status="running", stop_reason=None,
                           final_answer=None)
        done = await s.runner.resume(result.thread_id)
        events = s.store.events(result.run_id)
        calls_after = s.store.totals(result.run_id).calls

    assert (done.status, done.stop_reason) == ("success", "satisfied")
    assert done.final_answer == resumer.result.final_answer
    assert calls_after == calls  # not one call made again
    # Nothing was planned or asked again: the restart only recorded the ending.
    assert [e["type"] for e in events].count("plan_created") == 1
    assert [e["type"] for e in events].count("approval_requested") == 1
    assert sandbox_rows("SELECT order_id FROM refunds") == [{"order_id": "O-5002"}]
