"""The run queue of distributed mode: procrastinate jobs on the app's PostgreSQL.

A run's job is deferred in the transaction that records the run (or, for a resume, the one
that marks it pending again), so a run is never recorded without the job that executes it,
nor a job enqueued for a run that was rolled back. Jobs of one thread share a procrastinate
``lock`` (they execute one at a time, in order); interactive runs (a client waits for them)
carry a higher priority than background ones, so they overtake a backlog.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from procrastinate import SyncPsycopgConnector
from procrastinate.jobs import Job
from procrastinate.manager import JobManager
from procrastinate.schema import SchemaManager

from app.storage.db import Cursor, Database
from app.storage.store import Store

log = logging.getLogger(__name__)

TASK_NAME = "foreman.run"
QUEUE = "foreman-runs"
INTERACTIVE, BATCH = 10, 0
Action = Literal["execute", "resume"]


def ensure_schema(db: Database) -> None:
    """Create procrastinate's tables in the app database's schema, once."""
    if db.dialect != "postgres":
        raise ValueError("the run queue needs PostgreSQL (set FOREMAN_DATABASE_URL)")
    with db.schema_lock(), db.tx() as c:
        found = c.run("SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS ok")
        if not found[0]["ok"]:
            # Run as one script on the raw connection: it holds % and ? of its own.
            c.connection.execute(SchemaManager.get_schema())
            log.info("created the run queue's tables")


class RunQueue:
    """Enqueues and aborts run jobs from the API side (synchronous, inside store transactions)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Only ever used with the store's own connection, so it opens no pool of its own.
        self._jobs = JobManager(SyncPsycopgConnector())

    def enqueue_in(self, c: Cursor, run_id: str, thread_id: str, action: Action,
                   decisions: dict[str, Any] | None = None, priority: int = BATCH,
                   delay_s: float = 0.0) -> int:
        """Defer the run's job inside the caller's transaction; its id is kept on the run."""
        due = datetime.now(UTC) + timedelta(seconds=delay_s) if delay_s else None
        job = Job(queue=QUEUE, task_name=TASK_NAME, lock=f"thread:{thread_id}",
                  queueing_lock=None, priority=priority, scheduled_at=due,
                  task_kwargs={"run_id": run_id, "action": action, "decisions": decisions})
        deferred = self._jobs.defer_job(job, connection=c.connection)
        assert deferred.id is not None
        self.store.set_job(c, run_id, deferred.id)
        return deferred.id

    def enqueue_resume(self, run_id: str, thread_id: str, decisions: dict[str, Any] | None,
                       priority: int = INTERACTIVE) -> int:
        """Mark the run pending again and defer its resume, in one transaction."""
        with self.store.db.tx() as c:
            return self.enqueue_resume_in(c, run_id, thread_id, decisions, priority)

    def enqueue_resume_in(self, c: Cursor, run_id: str, thread_id: str,
                          decisions: dict[str, Any] | None,
                          priority: int = INTERACTIVE) -> int:
        """``enqueue_resume`` inside the caller's transaction (an approval decision's)."""
        c.run("UPDATE runs SET status = 'pending', cancel_requested = 0 WHERE id = ?",
              (run_id,))
        return self.enqueue_in(c, run_id, thread_id, "resume", decisions, priority)

    def abort(self, job_id: int) -> str | None:
        """Cancel a queued job or ask its worker to abort it; the job's status afterwards
        (``cancelled``: it never started; ``doing``: its worker stops it), None if unknown."""
        with self.store.db.tx() as c:
            conn = c.connection
            self._jobs.cancel_job_by_id(job_id, abort=True, connection=conn)
            rows = c.run("SELECT status::text AS status FROM procrastinate_jobs WHERE id = ?",
                         (job_id,))
        return str(rows[0]["status"]) if rows else None

    def job_counts(self) -> dict[str, int]:
        """Jobs per status (for /metrics and the benchmarks)."""
        rows = self.store.db.query("SELECT status::text AS status, COUNT(*) AS n"
                                   " FROM procrastinate_jobs GROUP BY status")
        return {str(r["status"]): int(r["n"]) for r in rows}
