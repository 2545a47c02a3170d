"""A decision committed just before the process died is applied at the next start: the
run neither sticks as interrupted nor asks again for what was already decided."""

from __future__ import annotations

from typing import Any

import pytest

from app.broker import EventBroker
from app.run_manager import RunManager
from app.runner import RunResult
from app.services import Services, open_services
from app.settings import Settings

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
