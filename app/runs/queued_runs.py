"""The run manager of an API replica in distributed mode: it records and enqueues runs, and
follows them through the database; ``foreman worker`` processes execute them.

The same interface as :class:`~app.runs.run_manager.RunManager` (the routes cannot tell), with
every decision taken in the database so that any replica answers for any run: the busy-
thread check is part of the run's insert, the job is deferred in that transaction, a cancel
reaches the run's worker through procrastinate's abort (and the run's ``cancel_requested``
flag, seen at the worker's next heartbeat), and waiting readers are woken by the workers'
notifications (``app.runs.wakeups``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from app.errors import Conflict, NotFound
from app.runs.broker import EventBroker
from app.runs.queue import BATCH, INTERACTIVE, RunQueue, ensure_schema
from app.runs.run_manager import TERMINAL, RunManager
from app.runs.runner import new_run_id
from app.runs.wakeups import Subscriber
from app.services import Services
from app.storage.db import Cursor
from app.storage.store import ACTIVE, RunRow
from app.storage.thread_keys import local_id

log = logging.getLogger(__name__)
POLL_S = 1.0  # how often a waiter re-reads the run when no wake-up came


class QueuedRunManager(RunManager):
    """Starts runs as queue jobs and follows them from the database."""

    def __init__(self, services: Services, broker: EventBroker) -> None:
        super().__init__(services, broker)
        url = services.settings.database_url
        if not url:
            raise ValueError("an API that executes no runs needs FOREMAN_DATABASE_URL")
        ensure_schema(self.store.db)
        self.queue = RunQueue(self.store)
        self.subscriber = Subscriber(url, broker)

    async def open(self) -> None:
        """Start listening for the workers' wake-ups."""
        await self.subscriber.start()

    # starting
    def thread_busy(self, thread_id: str) -> bool:
        """A run of the thread is queued or running (anywhere); new runs queued behind the
        thread's pending approval do not count (the approval has to stay decidable)."""
        active = self.store.active_runs(thread_id)
        if active and self.store.thread_pending_approvals(thread_id):
            return any(self.store.events(r.id, 0, limit=1) for r in active)
        return bool(active)

    def start(self, *, task: str, team: str, thread_id: str, tenant: str, created_by: str,
              metadata: Mapping[str, Any] | None = None, enqueue: bool = False,
              shadow: bool = False, interactive: bool = True) -> RunRow:
        """Record the run and defer its job in one transaction."""
        thread_id = self.store.key_of(tenant, thread_id)  # the tenant's id, or its key
        self.switch.admit(tenant)
        self._limiter.take(tenant)
        budget = (metadata or {}).get("budget_usd")
        run_id = new_run_id()
        priority = INTERACTIVE if interactive else BATCH
        return self.runner.create(
            task, team, thread_id, tenant=tenant, created_by=created_by, metadata=metadata,
            shadow=shadow, run_id=run_id, exclusive=not enqueue,
            budget_usd=float(budget) if budget is not None else None,
            then=lambda c: self.queue.enqueue_in(c, run_id, thread_id, "execute",
                                                 priority=priority))

    async def astart(self, **kwargs: Any) -> RunRow:
        """:meth:`start` off the API's event loop: it is database work only (the run's row
        and its job in one transaction), so other requests go on while it commits."""
        return await asyncio.to_thread(lambda: self.start(**kwargs))

    def check(self, run: RunRow) -> None:
        """Raise ``Conflict`` when the run's thread cannot take a resume now."""
        self.switch.admit(run.tenant, new_run=False)
        if self.thread_busy(run.thread_id):
            raise Conflict(f"thread {local_id(run.thread_id)} already has an active run")

    async def resume(self, run: RunRow, decisions: dict[str, Any]) -> None:
        """Mark the run pending and defer its resume with the decisions (one transaction,
        off the API's event loop)."""
        await asyncio.to_thread(self.queue.enqueue_resume, run.id, run.thread_id, decisions)

    def resume_in(self, c: Cursor, run: RunRow, decisions: dict[str, Any]) -> None:
        """Inside an approval decision's transaction: mark the run pending and defer its
        resume, so the decision commits with its job or not at all."""
        self.queue.enqueue_resume_in(c, run.id, run.thread_id, decisions)

    # waiting and cancelling
    async def wait(self, run_id: str, limit_s: float | None = None) -> RunRow:
        """The run once no longer queued or running (or as it is at the timeout)."""
        deadline = time.monotonic() + (limit_s if limit_s is not None else 1e9)
        while True:
            waiter = self.broker.waiter(run_id)  # taken before the read: no wake-up is missed
            run = await asyncio.to_thread(self.store.get_run, run_id)  # off the API's loop
            if run is None:
                raise NotFound(f"no run {run_id!r}")
            left = deadline - time.monotonic()
            if run.status not in ACTIVE or left <= 0:
                return run
            with suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), min(POLL_S, left))

    async def cancel(self, run_id: str, wait: bool = False) -> RunRow:
        """Stop a queued or running run wherever it executes; it keeps its checkpoints.
        The database work runs off the API's event loop."""
        run, stopped_here = await asyncio.to_thread(self._request_cancel, run_id)
        if stopped_here:
            self.broker.notify(run_id)
        if wait and run.status in ACTIVE:
            return await self.wait(run_id, self.services.settings.runs.wait_timeout_s)
        return run

    def _request_cancel(self, run_id: str) -> tuple[RunRow, bool]:
        """Flag the run, abort its job; (the run as it is now, whether the cancel was
        recorded here because no worker holds the run)."""
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}")
        if run.status in TERMINAL:
            raise Conflict(f"run {run_id} already finished ({run.status})")
        if run.status not in ACTIVE:
            return run, False
        self.store.set_cancel_requested(run_id)
        job_id = self.store.run_job_id(run_id)
        status = self.queue.abort(job_id) if job_id is not None else None
        stopped_here = status != "doing"
        if stopped_here:  # no worker holds it: record the cancel here
            self._mark_cancelled(run_id)
        return self.store.get_run(run_id) or run, stopped_here

    # lifecycle
    def recover(self) -> list[str]:
        """Nothing to do here: workers put stalled jobs back in the queue."""
        return []

    async def close(self) -> None:
        """Stop listening (runs go on in the workers)."""
        await self.subscriber.close()

    def active_run(self, run_id: str) -> asyncio.Task[None] | None:
        """No run executes in this process."""
        return None

    @property
    def active(self) -> int:
        """Runs executing in this process: none."""
        return 0
