"""``foreman worker``: executes runs taken from the queue (distributed mode).

Each job names a run and what to do with it (``execute`` a new run, ``resume`` it with
decisions). The worker claims the run (a new epoch, see ``app.runs.claims``) and drives it with
the same runner as embedded mode, its writes fenced by that epoch. While it runs, the claim
is heartbeated; a cancel (procrastinate's abort, or the run's ``cancel_requested`` flag seen
at a heartbeat) stops it. Jobs of workers whose procrastinate heartbeat went stale are put
back in the queue by any live worker and resume from the run's last checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from contextlib import suppress
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from procrastinate.job_context import AbortReason

from app.errors import StorageError
from app.llm.litellm_provider import litellm_ready
from app.observability.logs import run_id_var, thread_id_var
from app.runs.claims import Claim, LeaseLost
from app.runs.events import RunEvents
from app.runs.fencing import FencedStore
from app.runs.queue import QUEUE, TASK_NAME, Action, RunQueue, ensure_schema
from app.runs.runner import RunResult
from app.runs.wakeups import Publisher
from app.services import Services
from app.storage.store import ACTIVE, RunRow

log = logging.getLogger(__name__)
RETRY_LATER_S = 1.0  # a run whose tenant is at its limit, or still owned, is tried again
SHUTDOWN_GRACE_S = 5.0  # then runs still going are handed back to the queue


class Worker:
    """One worker process: a procrastinate worker whose single task drives runs."""

    def __init__(self, services: Services, concurrency: int | None = None,
                 name: str | None = None, install_signals: bool = True) -> None:
        url = services.settings.database_url
        if not url:
            raise ValueError("foreman worker needs FOREMAN_DATABASE_URL (PostgreSQL)")
        self.services = services
        self.store = services.store
        self.cfg = services.settings.queue
        self.concurrency = concurrency or self.cfg.worker_concurrency
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.url = url
        self.queue = RunQueue(self.store)
        self.publisher = Publisher(url, self.cfg.notify_every_ms / 1000)
        self.app = App(connector=PsycopgConnector(
            conninfo=url, min_size=1, max_size=self.concurrency + 3,
            kwargs={"prepare_threshold": None}))
        # A job that failed because the database blinked is tried again, backing off.
        retry = RetryStrategy(max_attempts=8, wait=1, exponential_wait=2,
                              retry_exceptions={StorageError})
        self.app.task(name=TASK_NAME, queue=QUEUE, pass_context=True, retry=retry)(self._job)
        self.finished: list[str] = []
        self._driving: dict[str, int] = {}  # run id -> id of the job driving it here
        self.install_signals = install_signals
        self.ready = asyncio.Event()  # set once the worker is about to take jobs

    async def run(self) -> None:
        """Serve jobs until stopped (SIGINT / SIGTERM stop it gracefully)."""
        ensure_schema(self.store.db)
        await self.warm()
        await self.publisher.start()
        async with self.app.open_async():
            rescuer = asyncio.create_task(self._rescue_stalled(), name="stalled-jobs")
            try:
                log.info("foreman worker ready",
                         extra={"status": f"concurrency={self.concurrency}"})
                self.ready.set()
                await self.app.run_worker_async(
                    queues=[QUEUE], name=self.name, concurrency=self.concurrency,
                    update_heartbeat_interval=self.cfg.heartbeat_s,
                    stalled_worker_timeout=self.cfg.stall_timeout_s,
                    install_signal_handlers=self.install_signals, listen_notify=True,
                    shutdown_graceful_timeout=SHUTDOWN_GRACE_S,
                    abort_job_polling_interval=max(1.0, self.cfg.heartbeat_s))
            finally:
                rescuer.cancel()
                with suppress(asyncio.CancelledError):
                    await rescuer
                await self.publisher.close()

    async def warm(self) -> None:
        """What a first run would otherwise pay before its first step, done before the
        worker takes a job: litellm loaded (every model call counts tokens with it; seconds
        of CPU, on a thread) and each team's graph compiled."""
        await litellm_ready()
        for team in self.services.settings.teams:
            self.services.runner.graph(team)

    async def _rescue_stalled(self) -> None:
        """Put back in the queue the jobs of workers that stopped heartbeating."""
        manager = self.app.job_manager
        while True:
            await asyncio.sleep(self.cfg.heartbeat_s)
            try:
                for job in await manager.get_stalled_jobs(
                        task_name=TASK_NAME, seconds_since_heartbeat=self.cfg.stall_timeout_s):
                    if job.id in self._driving.values():
                        # Its own job: this process is alive (it is checking), only its
                        # heartbeat was late (a busy loop); putting it back would start a
                        # second attempt of the run beside the first.
                        continue
                    log.warning("job of a stalled worker goes back to the queue",
                                extra={"status": f"job={job.id}"})
                    await manager.retry_job(job)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database went away: try again next beat
                log.warning("stalled-job check failed: %s", type(e).__name__)

    # the task
    async def _job(self, context: JobContext, run_id: str, action: Action,
                   decisions: dict[str, Any] | None = None) -> None:
        call = self.store.db.call  # every store step off this worker's event loop
        run = await call(self.store.get_run, run_id)
        if run is None:
            log.warning("job for a run that no longer exists is dropped",
                        extra={"run_id": run_id})
            return
        run_id_var.set(run.id)
        thread_id_var.set(run.thread_id)
        if run.status not in ACTIVE:
            log.info("run is %s; its job has nothing to do", run.status)
            return
        if run.id in self._driving:
            # Another worker put this job back while this process still drives the run
            # (its heartbeat was late): one attempt is enough.
            log.warning("job of a run this worker is already driving is dropped")
            return
        if action == "execute" and await call(self.store.queued_behind, run):
            # multitask_strategy=enqueue behind a pending approval (or a run ahead): the
            # same job again later, so the decision's resume job goes first.
            await self._later(run, action, decisions, context.job.priority)
            return
        claim = await call(self.store.claim_run, run.id, self.name,
                           tenant_limit=self.cfg.tenant_max_running,
                           stale_s=self.cfg.stall_timeout_s, take_live=False)
        if claim == "missing":
            return
        if not isinstance(claim, Claim):  # tenant at its limit, or another live owner
            await self._later(run, action, decisions, context.job.priority)
            return
        if await call(self.store.cancel_requested, run.id):
            await self._cancelled(run, claim)
            return
        self._driving[run.id] = context.job.id or 0
        try:
            await self._drive(context, run, claim, action, decisions)
        finally:
            del self._driving[run.id]
            self.publisher.mark(run.id)

    async def _drive(self, context: JobContext, run: RunRow, claim: Claim, action: Action,
                     decisions: dict[str, Any] | None) -> None:
        runner = self.services.runner
        listeners = [self.publisher.listener(run.id)]
        me = asyncio.current_task()
        assert me is not None
        stop: list[str] = []
        beat = asyncio.create_task(self._heartbeat(claim, me, stop), name=f"beat-{run.id}")
        try:
            if action == "resume" and decisions and await self._still_pending(run, decisions):
                result: RunResult = await runner.resume(run.thread_id, decisions, listeners,
                                                        run_id=run.id, claim=claim)
            elif action == "resume" or await self.store.db.call(self._started, run.id):
                # A retried job (or decisions an earlier attempt already applied): continue
                # from the last checkpoint; model calls replay, tool calls reconcile.
                result = await runner.resume(run.thread_id, None, listeners, run_id=run.id,
                                             claim=claim)
            else:
                result = await runner.execute(run.id, listeners, claim=claim)
            self.finished.append(run.id)
            log.info("run ended %s", result.status)
        except LeaseLost:
            log.warning("run was taken over by another owner; this worker stops it here")
        except asyncio.CancelledError:
            reason = context.abort_reason()
            if reason == AbortReason.SHUTDOWN and not stop:
                # This worker stops; the run goes on elsewhere from its checkpoint.
                await asyncio.shield(self._hand_back(run, claim, context.job.priority))
                raise
            if stop == ["lost"]:
                log.warning("run's claim was lost; stopped")
                return
            await self._cancelled(run, claim)
            if reason is not None:
                raise
        finally:
            beat.cancel()
            with suppress(asyncio.CancelledError):
                await beat

    def _started(self, run_id: str) -> bool:
        """Whether an earlier attempt of the run got as far as its first event."""
        return bool(self.store.events(run_id, 0, limit=1))

    async def _heartbeat(self, claim: Claim, job: asyncio.Task[Any], stop: list[str]) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_s)
            try:
                state = await self.store.db.call(self.store.heartbeat, claim)
            except Exception as e:  # the database blinked: the next beat tries again
                log.warning("heartbeat failed: %s", type(e).__name__)
                continue
            if state != "held":
                stop.append(state)
                job.cancel()
                return

    async def _still_pending(self, run: RunRow, decisions: dict[str, Any]) -> bool:
        pending = await self.services.runner.pending_interrupts(run.thread_id, run.team)
        return set(decisions) <= {p.id for p in pending}

    async def _cancelled(self, run: RunRow, claim: Claim | None) -> None:
        """Record the cancel as the run's owner (nothing when the claim is gone)."""
        if claim is None:
            return
        store = FencedStore(self.store, claim)

        def record() -> tuple[int, dict[str, Any]]:
            data = {"cost_usd": self.store.totals(run.id).cost_usd}
            return store.finish_run(run.id, "run_cancelled", data, status="interrupted",
                                    stop_reason="cancelled"), data

        try:
            seq, data = await self.store.db.call(record)
        except LeaseLost:
            log.warning("run was taken over before its cancel was recorded")
            return
        RunEvents(store, run.id, [self.publisher.listener(run.id)]).notify(
            seq, "run_cancelled", data)
        log.info("run cancelled")

    async def _hand_back(self, run: RunRow, claim: Claim, priority: int) -> None:
        """This worker stops: release the claim and queue the run's resume at once."""
        await self.store.db.call(self.store.release, claim)
        await self._later(run, "resume", None, priority, delay_s=0)

    async def _later(self, run: RunRow, action: Action, decisions: dict[str, Any] | None,
                     priority: int, delay_s: float = RETRY_LATER_S) -> None:
        """Defer the same work again, due in ``delay_s`` (a new job; this one ends)."""
        await self.store.db.call(self._defer, run, action, decisions, priority, delay_s)

    def _defer(self, run: RunRow, action: Action, decisions: dict[str, Any] | None,
               priority: int, delay_s: float) -> None:
        with self.store.db.tx() as c:
            self.queue.enqueue_in(c, run.id, run.thread_id, action, decisions, priority,
                                  delay_s=delay_s)
