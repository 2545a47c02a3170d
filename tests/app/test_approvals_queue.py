"""Approval decisions in distributed mode, on PostgreSQL: the decision and the resume job it
defers commit in one transaction, so a failure between them leaves neither behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.api.auth import Principal
from app.governance.resumers import DeferredResume
from app.runs.broker import EventBroker
from app.runs.queued_runs import QueuedRunManager
from app.runs.runner import RunResult
from app.services import Services, open_services
from app.storage.db import Cursor
from tests.conftest import make_settings

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
BOB = Principal("bob", "acme", frozenset({"approver"}),
                groups=frozenset({"support-leads", "budget-owners"}))


class Injected(RuntimeError):
    """The fault put between the settle and the enqueue."""


@pytest.fixture
async def svc(tmp_path: Path, pg_url: str) -> AsyncIterator[Services]:
    settings = make_settings(tmp_path / "data", with_policy=True, database_url=pg_url)
    async with open_services(settings) as s:
        yield s


async def paused(s: Services) -> RunResult:
    result = await s.runner.start(TASK, "support", tenant="acme", created_by="alice")
    assert result.status == "interrupted"
    return result


def jobs(s: Services, run_id: str) -> list[dict[str, Any]]:
    return s.store.db.query("SELECT args, status::text AS status FROM procrastinate_jobs"
                            " WHERE args->>'run_id' = ?", (run_id,))


def fail_enqueue(manager: QueuedRunManager, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the job's defer fail after the approval was settled in the transaction."""
    seen: list[str] = []

    def broken(c: Cursor, run_id: str, *args: Any, **kwargs: Any) -> int:
        settled = c.run("SELECT status FROM approvals WHERE run_id = ?", (run_id,))
        seen.extend(r["status"] for r in settled)
        raise Injected("the queue failed after the approval was settled")

    monkeypatch.setattr(manager.queue, "enqueue_in", broken)
    return seen


def decided_events(s: Services, run_id: str) -> list[dict[str, Any]]:
    return [e for e in s.store.events(run_id, 0, 10_000) if e["type"] == "approval_decided"]


async def test_approvals_queue_failure_after_settle_leaves_no_settled_approval(
        svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    result = await paused(svc)
    manager = QueuedRunManager(svc, EventBroker())
    assert isinstance(manager, DeferredResume)
    (row,) = svc.approvals.find(BOB, "pending")
    seen = fail_enqueue(manager, monkeypatch)

    with pytest.raises(Injected):
        await svc.approvals.decide(BOB, row.id, "approve", manager)

    assert seen == ["decided"]  # the fault struck with the approval already settled
    after = svc.store.get_approval(row.id)
    assert after is not None and after.status == "pending" and after.decided_by is None
    assert decided_events(svc, result.run_id) == []
    run = svc.store.get_run(result.run_id)
    assert run is not None and run.status == "interrupted"
    assert jobs(svc, result.run_id) == [] and svc.store.run_job_id(result.run_id) is None

    monkeypatch.undo()  # the queue works again: the same decision goes through, once
    await svc.approvals.decide(BOB, row.id, "approve", manager)
    after = svc.store.get_approval(row.id)
    assert after is not None and after.status == "decided" and after.decided_by == "bob"
    assert len(decided_events(svc, result.run_id)) == 1
    (job,) = jobs(svc, result.run_id)
    assert job["status"] == "todo" and job["args"]["action"] == "resume"
    assert job["args"]["decisions"] == {row.interrupt_id: {"decision": "approve",
                                                           "message": ""}}
    run = svc.store.get_run(result.run_id)
    assert run is not None and run.status == "pending"
    assert svc.store.run_job_id(result.run_id) is not None


async def test_approvals_queue_expiry_settles_with_its_resume_or_not_at_all(
        svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    result = await paused(svc)
    manager = QueuedRunManager(svc, EventBroker())
    (row,) = svc.approvals.find(BOB, "pending")
    assert row.expires_at is not None
    late = row.expires_at + 1
    fail_enqueue(manager, monkeypatch)

    with pytest.raises(Injected):
        await svc.approvals.sweep(manager, now=late)
    after = svc.store.get_approval(row.id)
    assert after is not None and after.status == "pending"
    assert jobs(svc, result.run_id) == [] and decided_events(svc, result.run_id) == []

    monkeypatch.undo()
    assert await svc.approvals.sweep(manager, now=late) == [row.id]
    after = svc.store.get_approval(row.id)
    assert after is not None and after.status == "expired"
    (job,) = jobs(svc, result.run_id)
    assert job["args"]["decisions"][row.interrupt_id]["decision"] == "reject"
    assert await svc.approvals.sweep(manager, now=late) == []  # settled once
    assert len(jobs(svc, result.run_id)) == 1
