"""One attempt of a run per worker: a worker whose heartbeat was late does not put its own
job back, and a job of a run it is still driving (put back by another worker) is dropped,
so no model call of the run is sent twice."""

from __future__ import annotations

import asyncio
import datetime
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.config.ops_config import QueueConfig
from app.llm.scripted import ScriptedProvider
from app.runs.queued_runs import QueuedRunManager
from app.runs.worker import Worker
from app.services import Services, open_services
from tests.app.queued_cluster import queued_cluster
from tests.conftest import make_settings
from tests.fakes import HashingEmbedder

TASK = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"


class CountingProvider(ScriptedProvider):
    """The scripted models, slow enough for a run to be caught mid-way; calls per key."""

    def __init__(self) -> None:
        super().__init__(latency_s=0.15)
        self.sent: Counter[str] = Counter()

    async def complete(self, model: Any, request: Any) -> Any:
        self.sent[request.call_key] += 1
        return await super().complete(model, request)


@pytest.fixture
async def cluster(tmp_path: Path, pg_url: str) -> AsyncIterator[tuple[Services, QueuedRunManager,
                                                                      Worker, CountingProvider]]:
    settings = make_settings(tmp_path / "data", database_url=pg_url, queue=QueueConfig(
        api_executes=False, heartbeat_s=0.1, stall_timeout_s=0.5))
    provider = CountingProvider()
    async with (open_services(settings, embedder=HashingEmbedder(), scripted=provider)
                as services, queued_cluster(services) as (manager, worker)):
        yield services, manager, worker, provider


def _run_sql(db: Any, sql: str) -> None:
    with db.tx() as c:
        c.run(sql)


async def _running(services: Services, run_id: str) -> int:
    """The run's job id once a worker is driving it."""
    for _ in range(600):
        run = services.store.get_run(run_id)
        if run is not None and run.status == "running" and services.store.events(run_id, 0):
            job = services.store.run_job_id(run_id)
            assert job is not None
            return job
        await asyncio.sleep(0.02)
    raise AssertionError("the run never started")


@pytest.mark.parametrize("how", ["its own heartbeat looks stale", "another worker retries it"])
async def test_worker_runs_one_attempt_when_its_job_goes_back_to_the_queue(
        cluster: tuple[Services, QueuedRunManager, Worker, CountingProvider], how: str) -> None:
    services, manager, worker, provider = cluster
    run = manager.start(task=TASK, team="support", thread_id="t-once", tenant="acme",
                        created_by="alice")
    job = await _running(services, run.id)
    db = services.store.db
    if how == "another worker retries it":
        await worker.app.job_manager.retry_job_by_id_async(
            job, retry_at=datetime.datetime.now(datetime.UTC))
    stale = "UPDATE procrastinate_workers SET last_heartbeat = NOW() - INTERVAL '1 hour'"
    done = None
    for _ in range(1200):
        if how == "its own heartbeat looks stale":
            # As a loop blocked past the stall timeout leaves it; from a thread, as the
            # worker's own heartbeat (on this loop) may hold the row meanwhile.
            await asyncio.to_thread(_run_sql, db, stale)
        done = services.store.get_run(run.id)
        if done is not None and done.status not in ("pending", "running"):
            break
        await asyncio.sleep(0.05)
    assert done is not None and done.status == "success", done
    assert provider.sent and max(provider.sent.values()) == 1, provider.sent
    assert done.epoch == 1  # claimed once: no second attempt took it over
    for _ in range(100):  # the job ends just after the run's status: its last event is stored
        if worker.finished:
            break
        await asyncio.sleep(0.05)
    assert worker.finished == [run.id]
