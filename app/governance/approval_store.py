"""The approvals table: one row per pending interrupt, decided at most once.

Every state change of an approval is written in one transaction with its run event and
the audit entry that records it (see ``Store.event_in``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from app.runs import crashpoints
from app.storage.db import Cursor, Database, Row
from app.storage.thread_keys import local_id

APPROVAL_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS approvals (
        id TEXT PRIMARY KEY,
        interrupt_id TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        requester TEXT,
        kind TEXT NOT NULL,
        action TEXT NOT NULL,
        args TEXT NOT NULL,
        args_sha256 TEXT NOT NULL,
        agent TEXT,
        rule TEXT,
        approver_group TEXT,
        risk TEXT,
        description TEXT,
        context TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'decided', 'expired')),
        decision TEXT,
        decided_by TEXT,
        message TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        decided_at DOUBLE PRECISION
    )""",
    "CREATE INDEX IF NOT EXISTS approvals_tenant ON approvals(tenant, status, created_at)",
    "CREATE INDEX IF NOT EXISTS approvals_expiry ON approvals(status, expires_at)",
    "CREATE INDEX IF NOT EXISTS approvals_thread ON approvals(thread_id, status)",
]
STATUSES = ("pending", "decided", "expired")


@dataclass(frozen=True)
class ApprovalRow:
    """An approval as stored."""

    id: str
    interrupt_id: str
    thread_id: str
    run_id: str
    tenant: str
    requester: str | None
    kind: str  # tool | plan | budget
    action: str
    args: dict[str, Any]
    args_sha256: str
    agent: str | None
    rule: str | None
    approver_group: str | None
    risk: str | None
    description: str | None
    context: dict[str, Any]
    status: str
    decision: str | None
    decided_by: str | None
    message: str | None
    created_at: float
    expires_at: float | None
    decided_at: float | None

    def as_json(self) -> dict[str, Any]:
        """The row as a JSON object (what the API returns)."""
        return {**self.__dict__, "thread_id": local_id(self.thread_id)}


class EventWriter(Protocol):
    """How approval writes add their run event (and audit entry) to the same transaction."""

    def event_in(self, c: Cursor, run_id: str, type: str, data: Mapping[str, Any],
                 actor: str | None = None) -> int: ...


class ApprovalRows:
    """Approval-table operations, mixed into the store."""

    db: Database

    def _approval_schema(self) -> None:
        with self.db.tx() as c:
            for statement in APPROVAL_SCHEMA:
                c.run(statement)

    def record_approval(self: Any, row: Mapping[str, Any],
                        event: Mapping[str, Any]) -> int | None:
        """Insert a pending approval with its ``approval_requested`` event (its sequence
        number); None when the approval is already recorded."""
        cols = list(row)
        values = [json.dumps(row[k], default=str) if k in {"args", "context"} else row[k]
                  for k in cols]
        with self.db.tx() as c:
            added = c.run(f"INSERT INTO approvals ({', '.join(cols)}) VALUES"  # noqa: S608
                          f" ({', '.join('?' for _ in cols)}) ON CONFLICT DO NOTHING"
                          " RETURNING id", values)
            if not added:
                return None
            seq: int = self.event_in(c, row["run_id"], "approval_requested", event,
                                     actor=row.get("requester"))
        crashpoints.hit("approval.create")
        return seq

    def settle_approval(self: Any, approval_id: str, status: str, decision: str,
                        decided_by: str, message: str, event: Mapping[str, Any],
                        at: float | None = None) -> int | None:
        """Mark a pending approval decided/expired (once, at ``at``: default now) with its
        event (its sequence number); None when it was no longer pending."""
        with self.db.tx() as c:
            seq: int | None = self.settle_approval_in(c, approval_id, status, decision,
                                                      decided_by, message, event, at)
        crashpoints.hit("approval.settle")
        return seq

    def settle_approval_in(self: Any, c: Cursor, approval_id: str, status: str,
                           decision: str, decided_by: str, message: str,
                           event: Mapping[str, Any], at: float | None = None) -> int | None:
        """``settle_approval`` inside the caller's transaction (which may also defer the
        run's resume, so that the decision and its resume commit together)."""
        done = c.run("UPDATE approvals SET status = ?, decision = ?, decided_by = ?,"
                     " message = ?, decided_at = ? WHERE id = ? AND status = 'pending'"
                     " RETURNING run_id", (status, decision, decided_by, message,
                                           time.time() if at is None else at, approval_id))
        if not done:
            return None
        seq: int = self.event_in(c, done[0]["run_id"], "approval_decided", event,
                                 actor=decided_by)
        return seq

    def extend_budget_in(self, c: Cursor, run_id: str, budget_usd: float) -> None:
        """Inside a transaction: the run's budget after an approved extension."""
        c.run("UPDATE runs SET budget_usd = ?, updated_at = ? WHERE id = ?",
              (budget_usd, time.time(), run_id))

    def settled_decisions(self, run_id: str,
                          interrupt_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The resume values of the run's settled approvals among ``interrupt_ids``, from
        their ``approval_decided`` events (an edit's arguments included): what a run resumes
        with when the decision was committed but the process died before applying it."""
        wanted = set(interrupt_ids)
        if not wanted:
            return {}
        rows = self.db.query("SELECT data FROM events WHERE run_id = ? AND"
                             " type = 'approval_decided' ORDER BY seq", (run_id,))
        found: dict[str, dict[str, Any]] = {}
        for r in rows:
            data = json.loads(r["data"])
            if data.get("interrupt_id") not in wanted:
                continue
            kind = str(data.get("decision") or "reject")
            value = {"decision": "reject" if kind == "expired" else kind,
                     "message": str(data.get("message") or "")}
            if "args" in data:
                value["args"] = data["args"]
            found[str(data["interrupt_id"])] = value
        return found

    def runs_awaiting_resume(self) -> list[str]:
        """Interrupted runs with nothing left to decide: a decision was settled and the
        process stopped before the run resumed with it."""
        rows = self.db.query(
            "SELECT r.id FROM runs r WHERE r.status = 'interrupted' AND r.stop_reason IS NULL"
            " AND EXISTS (SELECT 1 FROM approvals a WHERE a.run_id = r.id"
            " AND a.status <> 'pending') AND NOT EXISTS (SELECT 1 FROM approvals a"
            " WHERE a.run_id = r.id AND a.status = 'pending') ORDER BY r.created_at, r.id")
        return [str(r["id"]) for r in rows]

    def get_approval(self, approval_id: str) -> ApprovalRow | None:
        """One approval by id."""
        row = self.db.one("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return _approval(row) if row else None

    def list_approvals(self, tenant: str, status: str | None = None,
                       limit: int = 200) -> list[ApprovalRow]:
        """A tenant's approvals, newest first."""
        sql, params = "SELECT * FROM approvals WHERE tenant = ?", [tenant]
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        rows = self.db.query(sql + " ORDER BY created_at DESC, id LIMIT ?", (*params, limit))
        return [_approval(r) for r in rows]

    def run_approvals(self, run_id: str) -> list[ApprovalRow]:
        """A run's approvals, oldest first."""
        rows = self.db.query("SELECT * FROM approvals WHERE run_id = ? ORDER BY created_at",
                             (run_id,))
        return [_approval(r) for r in rows]

    def thread_pending_approvals(self, thread_id: str) -> list[ApprovalRow]:
        """Approvals the thread still waits for, oldest first."""
        rows = self.db.query("SELECT * FROM approvals WHERE thread_id = ? AND"
                             " status = 'pending' ORDER BY created_at", (thread_id,))
        return [_approval(r) for r in rows]

    def overdue_approvals(self, now: float) -> list[ApprovalRow]:
        """Pending approvals whose time ran out."""
        rows = self.db.query("SELECT * FROM approvals WHERE status = 'pending' AND"
                             " expires_at IS NOT NULL AND expires_at < ? ORDER BY expires_at",
                             (now,))
        return [_approval(r) for r in rows]


def _approval(r: Row) -> ApprovalRow:
    return ApprovalRow(**{**r, "args": json.loads(r["args"]),
                          "context": json.loads(r["context"])})
