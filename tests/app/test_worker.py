"""The queue path in one process: an API-side run manager that executes nothing, and a
worker taking the runs from PostgreSQL (procrastinate), on a fresh schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.config.ops_config import QueueConfig
from app.errors import Conflict
from app.runs.queue import RunQueue
from app.runs.queued_runs import QueuedRunManager
from app.runs.worker import Worker
from app.services import Services, open_services
from tests.app.queued_cluster import queued_cluster
from tests.conftest import make_settings
from tests.fakes import HashingEmbedder

TASK = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"


@dataclass
class Distributed:
    services: Services
    manager: QueuedRunManager
    worker: Worker


@pytest.fixture
async def distributed(tmp_path: Path, pg_url: str) -> AsyncIterator[Distributed]:
    settings = make_settings(tmp_path / "data", database_url=pg_url, queue=QueueConfig(
        api_executes=False, heartbeat_s=0.2, stall_timeout_s=1.0))
    async with (open_services(settings, embedder=HashingEmbedder()) as services,
                queued_cluster(services) as (manager, worker)):
        yield Distributed(services, manager, worker)


async def test_worker_executes_a_queued_run_the_api_side_follows(
        distributed: Distributed) -> None:
    store = distributed.services.store
    run = distributed.manager.start(task=TASK, team="support", thread_id="t-q1",
                                    tenant="acme", created_by="alice")
    assert store.run_job_id(run.id) is not None  # deferred with the run row
    done = await distributed.manager.wait(run.id, 120)
    assert done.status == "success" and done.final_answer
    events = store.events(run.id, 0, limit=10_000)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_completed"
    assert store.event_epochs(run.id)[-1][1] == done.epoch == 1
    assert distributed.worker.finished == [run.id]
    # Wake-ups are coalesced: far fewer notifications than events.
    assert 0 < distributed.worker.publisher.sent < len(events)


async def test_a_ready_worker_has_litellm_loaded_and_every_teams_graph_compiled(
        distributed: Distributed) -> None:
    from app.llm import litellm_provider

    assert distributed.worker.ready.is_set()
    assert litellm_provider._litellm is not None
    runner = distributed.services.runner
    assert set(runner._graphs) == set(distributed.services.settings.teams)


async def test_queue_job_commits_or_rolls_back_with_the_run_row(
        distributed: Distributed) -> None:
    store = distributed.services.store
    queue = RunQueue(store)
    before = sum(queue.job_counts().values())
    with pytest.raises(RuntimeError), store.db.tx() as c:
        queue.enqueue_in(c, "r-never", "t-never", "execute")
        raise RuntimeError("the request failed after the insert")
    assert sum(queue.job_counts().values()) == before
    busy = store.ensure_thread("t-busy", "acme")
    store.create_run("r-busy", busy, "support", TASK, tenant="acme")
    with pytest.raises(Conflict):
        distributed.manager.start(task=TASK, team="support", thread_id="t-busy",
                                  tenant="acme", created_by="alice")
    assert sum(queue.job_counts().values()) == before  # the refused run left no job


async def test_worker_drops_a_job_whose_run_is_gone(distributed: Distributed) -> None:
    queue = RunQueue(distributed.services.store)
    with distributed.services.store.db.tx() as c:
        job = queue.enqueue_in(c, "r-gone", "t-gone", "execute")
    for _ in range(600):
        rows = distributed.services.store.db.query(
            "SELECT status::text AS s FROM procrastinate_jobs WHERE id = ?", (job,))
        if rows[0]["s"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.1)
    assert rows[0]["s"] == "succeeded"
    assert distributed.services.store.get_run("r-gone") is None
