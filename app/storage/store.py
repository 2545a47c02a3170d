"""App tables: runs and the tool-call ledger (threads are in ``app.storage.thread_rows``, run
events in ``app.storage.event_rows``, the model-call journal and cost ledger in
``app.storage.cost_ledger``, run-memory notes waiting for their vectors in
``app.storage.memory_rows``).

The tool-call ledger holds STARTED/DONE per (thread + tool call id) with the stored result.
Threads, runs and events carry their tenant; runs, approvals and ledger rows name their
thread by its key (``app.storage.thread_keys``). The SQL is portable (SQLite and Postgres, see
``app.storage.db``); ``tests/app/test_store.py`` runs the same conformance suite on both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import Conflict
from app.governance.approval_store import APPROVAL_SCHEMA, ApprovalRow, ApprovalRows
from app.governance.audit import AUDIT_SCHEMA, POSTGRES_TRIGGERS, SQLITE_TRIGGERS
from app.governance.killswitch import SWITCH_SCHEMA, SwitchRows
from app.runs import crashpoints
from app.runs.claims import LeaseLost, RunClaims
from app.storage.cost_ledger import SPEND_SCHEMA, TOTALS, CostLedger, LedgerRow, Totals, totals_of
from app.storage.db import Cursor, Database, Row
from app.storage.event_rows import EventRows
from app.storage.memory_rows import MEMORY_SCHEMA, MemoryRows
from app.storage.thread_keys import local_id
from app.storage.thread_rows import (
    THREAD_INDEXES,
    THREAD_MIGRATION,
    THREAD_SCHEMA,
    ThreadRow,
    ThreadRows,
)

__all__ = ["ApprovalRow", "LedgerRow", "RunRow", "Store", "ThreadRow", "Totals"]

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        thread_id TEXT NOT NULL,
        team TEXT NOT NULL,
        task TEXT NOT NULL,
        status TEXT NOT NULL,
        stop_reason TEXT,
        final_answer TEXT,
        error TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS runs_thread ON runs(thread_id, created_at)",
    """CREATE TABLE IF NOT EXISTS events (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS model_calls (
        run_id TEXT NOT NULL,
        call_key TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        role TEXT NOT NULL,
        model TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL,
        response TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, call_key)
    )""",
    """CREATE TABLE IF NOT EXISTS response_cache (
        key TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        response TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS tool_calls (
        key TEXT PRIMARY KEY,
        thread_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        tool TEXT NOT NULL,
        args_sha256 TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('STARTED', 'DONE')),
        ok INTEGER,
        result TEXT,
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION
    )""",
]
# Columns added after the first release; older databases get them on open.
ADDED_COLUMNS = {
    "runs": {"tenant": "TEXT NOT NULL DEFAULT 'default'", "created_by": "TEXT",
             "metadata": "TEXT", "budget_usd": "DOUBLE PRECISION",
             # Ownership (see app.runs.fencing): the claim's epoch, who holds it, its heartbeat.
             "epoch": "INTEGER NOT NULL DEFAULT 0", "owner": "TEXT",
             "heartbeat_at": "DOUBLE PRECISION",
             "cancel_requested": "INTEGER NOT NULL DEFAULT 0",
             # The run's event counter: the next event takes last_seq + 1 under the row lock.
             "last_seq": "INTEGER NOT NULL DEFAULT 0", "job_id": "BIGINT"},
    "events": {"tenant": "TEXT NOT NULL DEFAULT 'default'", "epoch": "INTEGER"},
    "model_calls": {"tenant": "TEXT NOT NULL DEFAULT 'default'", "agent": "TEXT",
                    "tier": "TEXT", "route_reason": "TEXT",
                    "cached_tokens": "INTEGER NOT NULL DEFAULT 0",
                    "outcome": "TEXT NOT NULL DEFAULT 'ok'"},
}
INDEXES = [
    # The tenant's daily spend is summed before model calls (app/llm/budget.py).
    "CREATE INDEX IF NOT EXISTS model_calls_tenant ON model_calls(tenant, created_at)",
    # Claims count the tenant's running runs (app.runs.fencing).
    "CREATE INDEX IF NOT EXISTS runs_tenant_status ON runs(tenant, status)",
]
# Counters added to a database that already has events start where its events end.
BACKFILL = {("runs", "last_seq"): "UPDATE runs SET last_seq = COALESCE((SELECT MAX(seq)"
                                  " FROM events WHERE events.run_id = runs.id), 0)"}
ACTIVE = ("pending", "running")
# Everything the store's start creates: a database that has it as written here is not
# touched again (``Database.schema_once``).
STORE_DDL = (SCHEMA, ADDED_COLUMNS, INDEXES, BACKFILL, THREAD_SCHEMA, THREAD_MIGRATION,
             THREAD_INDEXES, APPROVAL_SCHEMA, AUDIT_SCHEMA, POSTGRES_TRIGGERS, SQLITE_TRIGGERS,
             SWITCH_SCHEMA, SPEND_SCHEMA, MEMORY_SCHEMA)


@dataclass(frozen=True)
class RunRow:
    """A run as stored."""

    id: str
    thread_id: str
    team: str
    task: str
    status: str
    stop_reason: str | None
    final_answer: str | None
    error: str | None
    tenant: str = "default"
    created_by: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    budget_usd: float | None = None
    epoch: int = 0
    owner: str | None = None


class Store(ThreadRows, CostLedger, ApprovalRows, EventRows, RunClaims, SwitchRows,
            MemoryRows):
    """The app tables on a :class:`~app.storage.db.Database` (SQLite or Postgres)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        db.schema_once("store", STORE_DDL, self._create_schema)

    def _create_schema(self) -> None:
        db = self.db
        self._thread_schema()
        with db.tx() as c:
            for statement in SCHEMA:
                c.run(statement)
        for table, cols in ADDED_COLUMNS.items():
            have = db.columns(table)
            for name, ddl in cols.items():
                if name not in have:
                    with db.tx() as c:
                        c.run(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}")
                        if (table, name) in BACKFILL:
                            c.run(BACKFILL[table, name])
        with db.tx() as c:
            for statement in INDEXES:  # on added columns, so after the migration
                c.run(statement)
        self._approval_schema()
        self._audit_schema()
        self._switch_schema()
        self._spend_schema()
        self._memory_schema()

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # runs
    def create_run(self, run_id: str, thread_id: str, team: str, task: str,
                   tenant: str = "default", created_by: str | None = None,
                   metadata: Mapping[str, Any] | None = None,
                   budget_usd: float | None = None, *, exclusive: bool = False,
                   then: Callable[[Cursor], object] | None = None) -> None:
        """Record a new run as pending, with its own USD budget if it has one.

        ``exclusive`` refuses (``Conflict``) when the thread already has an active run,
        checked under the thread row's lock so two requests cannot both pass; ``then``
        runs in the same transaction (the queue enqueues the run's job there).
        """
        now = time.time()
        with self.db.tx() as c:
            if exclusive:
                c.run("UPDATE threads SET updated_at = updated_at WHERE id = ?", (thread_id,))
                busy = c.run("SELECT id FROM runs WHERE thread_id = ? AND status IN (?, ?)"
                             " LIMIT 1", (thread_id, *ACTIVE))
                if busy:
                    raise Conflict(f"thread {local_id(thread_id)} already has an active run; "
                                   "wait for it, cancel it, or send multitask_strategy=enqueue")
            c.run("INSERT INTO runs (id, thread_id, team, task, status, created_at, updated_at,"
                  " tenant, created_by, metadata, budget_usd)"
                  " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
                  (run_id, thread_id, team, task, now, now, tenant, created_by,
                   json.dumps(dict(metadata or {})), budget_usd))
            if then is not None:
                then(c)

    def update_run(self, run_id: str, *, epoch: int | None = None, **fields: Any) -> None:
        """Set status / stop_reason / final_answer / error; with ``epoch``, only while the
        run's claim is still that one (``LeaseLost`` otherwise)."""
        with self.db.tx() as c:
            self._update_in(c, run_id, epoch, fields)
        crashpoints.hit("run.status")

    def finish_run(self, run_id: str, type: str, data: Mapping[str, Any], *,
                   epoch: int | None = None, **fields: Any) -> int:
        """A run's ending in one transaction: its row's fields (``update_run``) and its
        closing event (``run_completed``, ``run_failed``, ``run_cancelled``). Whoever sees the
        status finds the event, and a crash leaves neither (the ending is recorded again on
        resume). Returns the event's sequence number."""
        with self.db.tx() as c:
            self._update_in(c, run_id, epoch, fields)
            seq = self.event_in(c, run_id, type, data, epoch=epoch)
        crashpoints.hit("run.status")
        return seq

    def _update_in(self, c: Cursor, run_id: str, epoch: int | None,
                   fields: Mapping[str, Any]) -> None:
        allowed = {"status", "stop_reason", "final_answer", "error", "budget_usd"}
        cols = [k for k in fields if k in allowed]
        if not cols:
            return
        sets = ", ".join(f"{k} = ?" for k in cols)
        params = [*[fields[k] for k in cols], time.time(), run_id]
        fence = ""
        if epoch is not None:
            fence, params = " AND epoch = ?", [*params, epoch]
        done = c.run(f"UPDATE runs SET {sets}, updated_at = ? WHERE id = ?{fence}"  # noqa: S608
                     " RETURNING id", params)
        if epoch is not None and not done:
            raise LeaseLost(f"run {run_id} is no longer held at epoch {epoch}")

    def get_run(self, run_id: str) -> RunRow | None:
        """One run by id."""
        row = self.db.one("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _run(row) if row else None

    def thread_run(self, tenant: str, thread_id: str, run_id: str) -> tuple[RunRow, Totals] | None:
        """The tenant's run ``run_id`` on its thread ``thread_id`` with its model totals, in
        one statement (a status read, polled under load, waits on the database once)."""
        row = self.db.one(
            f"SELECT r.*, m.* FROM runs r JOIN threads t ON t.id = r.thread_id"  # noqa: S608
            f" LEFT JOIN (SELECT {TOTALS} FROM model_calls WHERE run_id = ?) m ON TRUE"
            " WHERE r.id = ? AND r.tenant = ? AND t.tenant = ? AND t.local_id = ?",
            (run_id, run_id, tenant, tenant, thread_id))
        return (_run(row), totals_of(row)) if row else None

    def latest_run(self, thread_id: str) -> RunRow | None:
        """The thread's most recent run."""
        row = self.db.one("SELECT * FROM runs WHERE thread_id = ?"
                          " ORDER BY created_at DESC, id DESC LIMIT 1", (thread_id,))
        return _run(row) if row else None

    def active_runs(self, thread_id: str) -> list[RunRow]:
        """The thread's pending and running runs, oldest first."""
        rows = self.db.query("SELECT * FROM runs WHERE thread_id = ? AND status IN (?, ?)"
                             " ORDER BY created_at, id", (thread_id, *ACTIVE))
        return [_run(r) for r in rows]

    def queued_behind(self, run: RunRow) -> bool:
        """A new run (no events yet) that must wait: its thread waits for a decision, or an
        earlier run of the thread is still queued or running."""
        if self.events(run.id, 0, limit=1):
            return False
        if self.thread_pending_approvals(run.thread_id):
            return True
        return any((r.created_at, r.id) < (run.created_at, run.id)
                   for r in self.active_runs(run.thread_id))

    def thread_runs(self, thread_id: str) -> list[RunRow]:
        """Every run of a thread, oldest first."""
        rows = self.db.query("SELECT * FROM runs WHERE thread_id = ? ORDER BY created_at, id",
                             (thread_id,))
        return [_run(r) for r in rows]

    def runs_with_status(self, *statuses: str) -> list[RunRow]:
        """Runs in any of ``statuses`` (e.g. the active ones at startup), oldest first."""
        marks = ", ".join("?" for _ in statuses)
        rows = self.db.query(f"SELECT * FROM runs WHERE status IN ({marks})"  # noqa: S608
                             " ORDER BY created_at, id", statuses)
        return [_run(r) for r in rows]

    # tool-call ledger
    def tool_get(self, key: str) -> dict[str, Any] | None:
        """The ledger row of a tool call, if any."""
        row = self.db.one("SELECT * FROM tool_calls WHERE key = ?", (key,))
        if row is None:
            return None
        row["result"] = json.loads(row["result"]) if row["result"] else None
        return row

    def tool_started(self, key: str, thread_id: str, agent: str, tool: str,
                     args_sha256: str) -> None:
        """Mark a tool call as started, before it touches anything."""
        with self.db.tx() as c:
            c.run("INSERT INTO tool_calls (key, thread_id, agent, tool, args_sha256, status,"
                  " started_at) VALUES (?, ?, ?, ?, ?, 'STARTED', ?)",
                  (key, thread_id, agent, tool, args_sha256, time.time()))

    def tool_done(self, key: str, ok: bool, result: Mapping[str, Any]) -> None:
        """Store a tool call's result and mark it done."""
        with self.db.tx() as c:
            c.run("UPDATE tool_calls SET status = 'DONE', ok = ?, result = ?, finished_at = ?"
                  " WHERE key = ?", (int(ok), json.dumps(result, default=str), time.time(), key))

    # figures for /metrics (all tenants, or one)
    def run_counts(self, tenant: str | None = None) -> dict[str, int]:
        """Runs per status."""
        where, params = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        rows = self.db.query(f"SELECT status, COUNT(*) AS n FROM runs {where}"  # noqa: S608
                             " GROUP BY status", params)
        return {r["status"]: int(r["n"]) for r in rows}

    def model_usage(self, tenant: str | None = None) -> list[Row]:
        """Calls, tokens and cost per (model, role)."""
        where, params = ("AND tenant = ?", (tenant,)) if tenant is not None else ("", ())
        sql = ("SELECT model, role, COUNT(*) AS calls, COALESCE(SUM(cost_usd), 0) AS cost_usd,"
               " COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS tokens"
               " FROM model_calls WHERE outcome IN ('ok', 'cached') ")
        return self.db.query(sql + where + " GROUP BY model, role", params)

    def tool_counts(self, tenant: str | None = None) -> dict[str, int]:
        """Tool calls per tool."""
        if tenant is None:
            rows = self.db.query("SELECT tool, COUNT(*) AS n FROM tool_calls GROUP BY tool")
        else:
            rows = self.db.query("SELECT c.tool AS tool, COUNT(*) AS n FROM tool_calls c"
                                 " JOIN threads t ON t.id = c.thread_id WHERE t.tenant = ?"
                                 " GROUP BY c.tool", (tenant,))
        return {r["tool"]: int(r["n"]) for r in rows}


def _run(row: Row) -> RunRow:
    return RunRow(id=row["id"], thread_id=row["thread_id"], team=row["team"], task=row["task"],
                  status=row["status"], stop_reason=row["stop_reason"],
                  final_answer=row["final_answer"], error=row["error"],
                  tenant=row.get("tenant") or "default", created_by=row.get("created_by"),
                  metadata=json.loads(row.get("metadata") or "{}"),
                  created_at=float(row["created_at"]), updated_at=float(row["updated_at"]),
                  budget_usd=row.get("budget_usd"), epoch=int(row.get("epoch") or 0),
                  owner=row.get("owner"))
