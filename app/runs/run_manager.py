"""Background runs on the server's event loop: bounded, one at a time per thread, cancellable.

A run is recorded first (pending) and executed by a task that holds the thread's lock, a
claim of the run (``app.runs.claims``: its tenant's concurrency limit is checked there, in the
database) and a slot of the global semaphore. Claims are heartbeated; a run another live
process claimed is left to it, so two servers started on one database do not both resume
it. Tasks cancelled by shutdown leave their run ``running`` so the next start resumes it
from its last checkpoint; only an explicit cancel marks it cancelled.

What a route asks of the manager (start, resume, cancel, wait) does its database work on a
worker thread and spawns the run's task here, on the loop. Those steps take the thread's
admission lock (:meth:`RunManager.admitting`) from their check to the spawn, so two of
them on one thread still see each other's outcome, as they did when nothing yielded between
the check and the spawn.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from app.errors import Conflict, NotFound
from app.governance.ratelimit import RateLimiter
from app.llm.stream import token_receiver
from app.observability.logs import run_id_var, thread_id_var
from app.runs.broker import EventBroker
from app.runs.claims import Claim, LeaseLost
from app.runs.events import Listener
from app.runs.runner import OWNER, RunResult
from app.services import Services
from app.storage.store import ACTIVE, RunRow
from app.storage.thread_keys import local_id

log = logging.getLogger(__name__)

Job = Callable[[Sequence[Listener], Claim], Awaitable[RunResult]]
TENANT_WAIT_S = 0.5  # how often a run held back by its tenant's limit tries again
APPROVAL_WAIT_S = 0.25  # how often a run queued behind a pending approval looks again
TERMINAL = ("success", "error", "timeout")


class RunManager:
    """Starts, queues, cancels and recovers runs for the HTTP API."""

    def __init__(self, services: Services, broker: EventBroker) -> None:
        self.services = services
        self.store = services.store
        self.runner = services.runner
        self.switch = services.switch
        self.broker = broker
        cfg = services.settings.runs
        self._slots = asyncio.Semaphore(cfg.max_concurrent)
        self._limiter = RateLimiter(cfg.rate_limit_per_minute, self.store.db)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._thread_locks: dict[str, asyncio.Lock] = {}
        self._thread_runs: dict[str, list[str]] = {}
        self._cancelled: set[str] = set()
        self._parked: set[str] = set()  # new runs queued behind a pending approval
        self._claims: dict[str, Claim] = {}
        self._beats: asyncio.Task[None] | None = None
        self._admissions: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, holders + waiters

    async def open(self) -> None:
        """Start heartbeating the claims of the runs executing here."""
        self._beats = asyncio.create_task(self._heartbeat_forever(), name="run-heartbeats")

    async def _heartbeat_forever(self) -> None:
        every = self.services.settings.queue.heartbeat_s
        while True:
            await asyncio.sleep(every)
            try:  # one transaction for every claim held here
                beats = await self.store.db.call(self.store.heartbeat_all,
                                                 list(self._claims.values()))
            except Exception:  # the database blinked: the next beat tries again
                log.warning("heartbeat failed", extra={"status": f"claims={len(self._claims)}"})
                continue
            for run_id, state in beats.items():
                task = self._tasks.get(run_id)
                if state != "held" and task is not None:
                    if state == "cancel":  # asked from another process sharing the database
                        self._cancelled.add(run_id)
                    task.cancel()

    # starting
    def thread_busy(self, thread_id: str) -> bool:
        """A run of this thread is queued or running (here, or recorded as active); a run
        waiting behind the thread's pending approval does not count (the approval has to
        be decidable, and the thread shows as interrupted until it is)."""
        if any(r not in self._parked for r in self._thread_runs.get(thread_id, [])):
            return True
        return any(r.id not in self._parked for r in self.store.active_runs(thread_id))

    def _admit(self, tenant: str, thread_id: str, enqueue: bool) -> None:
        self.switch.admit(tenant)
        if not enqueue and self.thread_busy(thread_id):
            raise Conflict(f"thread {local_id(thread_id)} already has an active run; wait for "
                           "it, cancel it, or send multitask_strategy=enqueue")
        self._limiter.take(tenant)

    @asynccontextmanager
    async def admitting(self, thread_id: str) -> AsyncIterator[None]:
        """Hold the thread's admission lock: one start, resume or cancel of the thread at a
        time goes from its checks (off the loop) to its task's spawn (on it)."""
        lock, users = self._admissions.get(thread_id, (asyncio.Lock(), 0))
        self._admissions[thread_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._admissions[thread_id]
            if users == 1:
                del self._admissions[thread_id]
            else:
                self._admissions[thread_id] = (lock, users - 1)

    def _admission_held(self, thread_id: str) -> bool:
        entry = self._admissions.get(thread_id)
        return entry is not None and entry[0].locked()

    def start(self, *, task: str, team: str, thread_id: str, tenant: str, created_by: str,
              metadata: Mapping[str, Any] | None = None, enqueue: bool = False,
              shadow: bool = False, interactive: bool = True) -> RunRow:
        """Record a run of ``task`` on the thread and execute it in the background.

        ``interactive`` (a client waits for it) ranks it above background runs where a
        queue orders them (distributed mode); here every run takes the next free slot.
        """
        run = self._record(task=task, team=team, thread_id=thread_id, tenant=tenant,
                           created_by=created_by, metadata=metadata, enqueue=enqueue,
                           shadow=shadow)
        self._launch(run)
        return run

    async def astart(self, **kwargs: Any) -> RunRow:
        """:meth:`start` from a route: the checks and the run's row on a worker thread, the
        run's task spawned here on the loop, under the thread's admission lock."""
        kwargs.pop("interactive", None)  # every run here takes the next free slot
        async with self.admitting(kwargs["thread_id"]):
            run = await asyncio.to_thread(lambda: self._record(**kwargs))
            self._launch(run)  # nothing yields after this: a caller subscribes before it runs
        return run

    def _record(self, *, task: str, team: str, thread_id: str, tenant: str, created_by: str,
                metadata: Mapping[str, Any] | None = None, enqueue: bool = False,
                shadow: bool = False) -> RunRow:
        """The admission checks and the pending run's row (database work only)."""
        thread_id = self.store.key_of(tenant, thread_id)  # the tenant's id, or its key
        self._admit(tenant, thread_id, enqueue)
        budget = (metadata or {}).get("budget_usd")
        return self.runner.create(task, team, thread_id, tenant=tenant, created_by=created_by,
                                  metadata=metadata, shadow=shadow,
                                  budget_usd=float(budget) if budget is not None else None)

    def _launch(self, run: RunRow) -> None:
        self._spawn(run, lambda listeners, claim: self.runner.execute(run.id, listeners, claim),
                    fresh=True)

    # resuming with decisions (the approvals service calls these: see app.governance.approvals)
    def check(self, run: RunRow) -> None:
        """Raise ``Conflict`` when the run's thread cannot take a resume now."""
        self.switch.admit(run.tenant, new_run=False)
        if self.thread_busy(run.thread_id):
            raise Conflict(f"thread {local_id(run.thread_id)} already has an active run")

    async def resume(self, run: RunRow, decisions: dict[str, Any]) -> None:
        """Resume the run with ``{interrupt_id: decision}`` in the background (marked
        pending on a worker thread, its task spawned here)."""
        await asyncio.to_thread(self._reopen, run.id)
        self._spawn(run, lambda listeners, claim: self.runner.resume(
            run.thread_id, decisions, listeners, run_id=run.id, claim=claim))

    def _reopen(self, run_id: str) -> None:
        self.store.update_run(run_id, status="pending")
        self.store.set_cancel_requested(run_id, False)

    def _spawn(self, run: RunRow, job: Job, fresh: bool = False) -> None:
        self._thread_runs.setdefault(run.thread_id, []).append(run.id)
        self._tasks[run.id] = asyncio.create_task(self._execute(run, job, fresh), name=run.id)

    async def _execute(self, run: RunRow, job: Job, fresh: bool = False) -> None:
        """Run the job under the thread's lock; a new run (``fresh``) on a thread that waits
        for a decision first queues behind it (see :meth:`_wait_behind_approvals`)."""
        run_id_var.set(run.id)
        thread_id_var.set(run.thread_id)
        token_receiver.set(self.broker.tokens(run.id))
        lock = self._thread_locks.setdefault(run.thread_id, asyncio.Lock())
        try:
            while True:
                if fresh:
                    await self._wait_behind_approvals(run)
                async with lock:
                    # The run ahead may have paused for an approval while this one waited.
                    if fresh and await self.store.db.call(self._awaits_decision, run):
                        continue
                    await self._run_held(run, job)
                    return
        except asyncio.CancelledError:
            if run.id in self._cancelled:
                await self.store.db.call(self._mark_cancelled, run.id)
            raise
        except LeaseLost:
            log.warning("run was taken over by another process; stopped here")
        except Exception as e:  # a run's failure must not escape into the server loop
            log.exception("run could not execute")
            await self.store.db.call(self._mark_failed, run.id, e)
        finally:
            queue = self._thread_runs.get(run.thread_id, [])
            if run.id in queue:
                queue.remove(run.id)
            if not queue:
                self._thread_runs.pop(run.thread_id, None)
            self._tasks.pop(run.id, None)
            self._claims.pop(run.id, None)
            self._cancelled.discard(run.id)
            self.broker.notify(run.id)

    async def _run_held(self, run: RunRow, job: Job) -> None:
        """The job, with the thread's lock held: claimed, in a slot of the semaphore."""
        if run.id in self._cancelled:
            await self.store.db.call(self._mark_cancelled, run.id)
            return
        claim = await self._claim(run)
        if claim is None:
            log.info("run is executed by another live process; left to it")
            return
        self._claims[run.id] = claim
        async with self._slots:
            await job([self.broker.listener(run.id)], claim)

    async def _wait_behind_approvals(self, run: RunRow) -> None:
        """``multitask_strategy=enqueue`` on a thread that waits for a decision: the new run
        stays pending until every approval of the thread is decided (or expired) and the
        run that asked has gone on, finished or paused again (then it waits again). While
        the thread's admission lock is held (a decision between its settle and its resume's
        spawn) a parked run goes on waiting."""
        parked = False
        try:
            while await self.store.db.call(self._still_behind, run, parked):
                if not parked:
                    log.info("run queued behind the thread's pending approval")
                    self._parked.add(run.id)
                    parked = True
                await asyncio.sleep(APPROVAL_WAIT_S)
        finally:
            self._parked.discard(run.id)

    def _awaits_decision(self, run: RunRow) -> bool:
        return bool(self.store.thread_pending_approvals(run.thread_id))

    def _still_behind(self, run: RunRow, parked: bool) -> bool:
        return self._awaits_decision(run) or (parked and (
            self._admission_held(run.thread_id) or any(
                (r.created_at, r.id) < (run.created_at, run.id)
                for r in self.store.active_runs(run.thread_id))))

    async def _claim(self, run: RunRow) -> Claim | None:
        """Claim the run once its tenant has a free slot; None when another live process
        holds it."""
        cfg = self.services.settings.queue
        while True:
            current = await self.store.db.call(self.store.get_run, run.id)
            if current is None:
                return None
            dead = current.status == "running" and owner_is_gone(current.owner)
            got = await self.store.db.call(
                self.store.claim_run, run.id, OWNER, tenant_limit=cfg.tenant_max_running,
                stale_s=cfg.stall_timeout_s, take_live=dead)
            if isinstance(got, Claim):
                return got
            if got == "missing" or (got == "owned" and current.status not in ACTIVE):
                return None
            # The tenant is at its limit, or another process still heartbeats the run (if it
            # stops, its claim goes stale and this one takes over).
            await asyncio.sleep(TENANT_WAIT_S if got == "tenant_full" else cfg.heartbeat_s)

    def _mark_failed(self, run_id: str, error: Exception) -> None:
        self.store.finish_run(run_id, "run_failed", {"reason": str(error)}, status="error",
                              error=f"{type(error).__name__}: {error}")

    def _mark_cancelled(self, run_id: str) -> None:
        self.store.finish_run(run_id, "run_cancelled",
                              {"cost_usd": self.store.totals(run_id).cost_usd},
                              status="interrupted", stop_reason="cancelled")

    # waiting and cancelling
    async def wait(self, run_id: str, limit_s: float | None = None) -> RunRow:
        """The run once it is no longer queued or running (or as it is at the timeout)."""
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.wait({task}, timeout=limit_s)
        run = await asyncio.to_thread(self.store.get_run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}")
        return run

    async def cancel(self, run_id: str, wait: bool = False) -> RunRow:
        """Stop a queued or running run; it keeps its checkpoints and can be resumed. Its
        database work runs on a worker thread."""
        run = await asyncio.to_thread(self.store.get_run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}")
        async with self.admitting(run.thread_id):  # a resume being spawned is seen here
            task = self._tasks.get(run_id)
            if task is not None:
                self._cancelled.add(run_id)
                task.cancel()
            else:
                run = await asyncio.to_thread(self._cancel_recorded, run_id)
        if task is not None and wait:
            await asyncio.wait({task})
        return await self.wait(run_id, limit_s=0) if wait else run

    def _cancel_recorded(self, run_id: str) -> RunRow:
        """Cancel a run that no task here executes (database work only)."""
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}")
        if run.status in ACTIVE:  # recorded as active but not running here
            self.store.set_cancel_requested(run_id)  # its owner, if alive, stops at a beat
            self._mark_cancelled(run_id)
        elif run.status in TERMINAL:
            raise Conflict(f"run {run_id} already finished ({run.status})")
        return run

    # lifecycle
    def recover(self) -> list[str]:
        """Resume runs that were active when the process last stopped, and runs whose
        decision was settled but not yet applied when it stopped."""
        recovered = []
        decided = [r for r in map(self.store.get_run, self.store.runs_awaiting_resume()) if r]
        for run in [*self.store.runs_with_status(*ACTIVE), *decided]:
            if run.id in self._tasks:
                continue
            started = bool(self.store.events(run.id, 0, limit=1))
            if started:
                self._spawn(run, self._resume_job(run))
            else:  # a new run queued behind an approval queues again
                self._spawn(run, self._execute_job(run), fresh=True)
            recovered.append(run.id)
        if recovered:
            log.info("resuming %d runs active at last stop", len(recovered))
        return recovered

    def _resume_job(self, run: RunRow) -> Job:
        return lambda listeners, claim: self.runner.resume(run.thread_id, None, listeners,
                                                           run_id=run.id, claim=claim)

    def _execute_job(self, run: RunRow) -> Job:
        return lambda listeners, claim: self.runner.execute(run.id, listeners, claim)

    async def sweep_forever(self, every_s: float) -> None:
        """Expire overdue approvals now and every ``every_s`` seconds (a lifespan task)."""
        while True:
            try:
                await self.services.approvals.sweep(self)
            except Exception:  # a failed sweep is retried next time; the server carries on
                log.exception("approval expiry sweep failed")
            await asyncio.sleep(every_s)

    async def close(self) -> None:
        """Stop every task without marking runs cancelled (they resume at next start)."""
        if self._beats is not None:
            self._beats.cancel()
        for claim in list(self._claims.values()):
            self.store.release(claim)  # another process may take them at once
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    def active_run(self, run_id: str) -> asyncio.Task[None] | None:
        """The task of a run queued or running here."""
        return self._tasks.get(run_id)

    @property
    def active(self) -> int:
        """Runs queued or running in this process."""
        return len(self._tasks)


def owner_is_gone(owner: str | None) -> bool:
    """The claim's owner was a process on this host that no longer exists."""
    host, _, pid = (owner or "").rpartition(":")
    if host != OWNER.rpartition(":")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False
