"""``multitask_strategy=enqueue`` behind a pending approval on the queue path: the new run's
job waits (deferred again) until the approval is decided and the run that asked has
finished; the approval stays decidable meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.api.auth import Principal
from app.config.ops_config import QueueConfig
from app.errors import Conflict
from app.runs.queued_runs import QueuedRunManager
from app.services import open_services
from tests.api.conftest import SUPPORT_REFUND, SUPPORT_WHERE
from tests.app.queued_cluster import queued_cluster
from tests.conftest import make_settings
from tests.fakes import HashingEmbedder

BOB = Principal("bob", "acme", frozenset({"approver"}),
                groups=frozenset({"support-leads", "finance-leads"}))


@pytest.fixture
async def queued(tmp_path: Path, pg_url: str) -> AsyncIterator[QueuedRunManager]:
    settings = make_settings(tmp_path / "data", with_policy=True, database_url=pg_url,
                             queue=QueueConfig(api_executes=False, heartbeat_s=0.2,
                                               stall_timeout_s=1.0))
    async with (open_services(settings, embedder=HashingEmbedder()) as services,
                queued_cluster(services) as (manager, _)):
        yield manager


async def test_worker_enqueued_run_waits_behind_the_pending_approval(
        queued: QueuedRunManager) -> None:
    store, approvals = queued.store, queued.services.approvals
    first = queued.start(task=SUPPORT_REFUND, team="support", thread_id="t-held",
                         tenant="acme", created_by="alice")
    paused = await queued.wait(first.id, 120)
    (approval,) = store.thread_pending_approvals(first.thread_id)
    with pytest.raises(Conflict):  # any other strategy is refused, naming the approval
        approvals.check_no_pending(first.thread_id)
    behind = queued.start(task=SUPPORT_WHERE, team="support", thread_id="t-held",
                          tenant="acme", created_by="alice", enqueue=True)
    await asyncio.sleep(3.0)  # several pick-ups of its job
    held, held_events = store.get_run(behind.id), store.events(behind.id)
    busy = queued.thread_busy(first.thread_id)
    await approvals.decide(BOB, approval.id, "approve", queued)
    done = await queued.wait(first.id, 120)
    after = await queued.wait(behind.id, 120)
    ended = [e for e in store.events(first.id) if e["type"] == "run_completed"]
    started = [e for e in store.events(behind.id) if e["type"] == "run_started"]

    assert paused.status == "interrupted"
    assert behind.thread_id == first.thread_id
    assert held is not None and held.status == "pending" and held_events == []
    assert busy is False  # so the approval could be decided
    assert done.status == "success" and after.status == "success"
    assert len(ended) == 1 and len(started) == 1
    assert started[0]["ts"] >= ended[0]["ts"]
