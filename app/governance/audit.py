"""The audit log: append-only, hash-chained per tenant, written in the transaction it records.

Each entry's hash covers its own fields and the previous entry's hash, so altering,
removing or reordering any row breaks the chain from that row on. Triggers reject UPDATE
and DELETE on both backends; :meth:`AuditLog.verify_audit` finds what a trigger cannot
stop (someone with raw access to the database file).

Entries are built from run events (one place, :func:`audit_entry`): no raw prompts, tool
arguments and results only as hashes, free text redacted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.governance.redact import redact
from app.observability.logs import trace_id_var
from app.runs import crashpoints
from app.storage.db import Cursor, Database
from tools.spec import args_sha256

GENESIS = "0" * 64
AUDIT_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS audit_log (
        tenant TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        run_id TEXT,
        type TEXT NOT NULL,
        actor TEXT,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (tenant, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS audit_run ON audit_log(run_id, tenant, seq)",
]
SQLITE_TRIGGERS = [
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
]
POSTGRES_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log",
    """CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
]

# Run events that are audited, and the fields of each kept (values redacted).
_KEEP: dict[str, tuple[str, ...]] = {
    "run_started": ("thread_id", "team", "task", "budget_usd", "mode"),
    "plan_created": ("ledger",),
    "replanned": ("replans", "ledger"),
    "plan_reviewed": ("decision", "message"),
    "model_call": ("role", "agent", "model", "tier", "prompt_tokens", "completion_tokens",
                   "cost_usd", "outcome", "route_reason"),
    "tool_called": ("agent", "tool", "tool_call_id", "args_sha256"),
    "tool_result": ("agent", "tool", "tool_call_id", "ok", "executed", "replayed"),
    "approval_requested": ("approval_id", "interrupt_id", "kind", "action", "agent", "risk",
                           "policy_rule", "approver_group", "args_sha256", "requester"),
    "approval_decided": ("approval_id", "interrupt_id", "decision", "by", "message",
                         "args_sha256"),
    "run_completed": ("stop_reason", "cost_usd", "usage"),
    "run_failed": ("reason",),
    "run_cancelled": ("cost_usd",),
}


@dataclass(frozen=True)
class Head:
    """A tenant's newest entry at some moment: an anchor to check the chain against later."""

    tenant: str
    seq: int
    hash: str


@dataclass(frozen=True)
class Verification:
    """The result of checking a tenant's chain."""

    ok: bool
    entries: int
    first_bad_entry: int | None = None  # its sequence number within its tenant's chain
    tenant: str | None = None


def audit_entry(type: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the audit log keeps of a run event (None: not audited)."""
    keep = _KEEP.get(type)
    if keep is None:
        return None
    out = {k: data[k] for k in keep if k in data}
    if type == "tool_result":
        payload = data.get("result") if data.get("ok") else data.get("error")
        out["result_sha256"] = args_sha256({"result": payload})
        if isinstance(data.get("result"), Mapping) and data["result"].get("shadow"):
            out["shadow"] = True
    if type == "tool_called" and "args_sha256" not in out and "args" in data:
        out["args_sha256"] = args_sha256(data["args"])
    trace_id = trace_id_var.get()
    if trace_id:
        out["trace_id"] = trace_id
    return dict(redact(out))


def entry_hash(prev: str, tenant: str, seq: int, ts: float, run_id: str | None, type: str,
               actor: str | None, data: str) -> str:
    """The chained hash of one entry."""
    blob = json.dumps([prev, tenant, seq, repr(float(ts)), run_id, type, actor, data],
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class AuditLog:
    """Audit-table operations; mixed into the store so entries share its transactions."""

    db: Database

    def _audit_schema(self) -> None:
        with self.db.tx() as c:
            for statement in AUDIT_SCHEMA:
                c.run(statement)
            triggers = POSTGRES_TRIGGERS if self.db.dialect == "postgres" else SQLITE_TRIGGERS
            if self.db.dialect == "postgres":
                c.run("SELECT pg_advisory_xact_lock(7310001)")  # parallel starts
            for statement in triggers:
                c.run(statement)

    def audit_append(self, c: Cursor, tenant: str, type: str, data: Mapping[str, Any], *,
                     run_id: str | None = None, actor: str | None = None) -> int:
        """Append one entry inside the caller's transaction; returns its sequence number."""
        if self.db.dialect == "postgres":  # serialise each tenant's chain
            c.run("SELECT pg_advisory_xact_lock(hashtext(?))", (f"audit:{tenant}",))
        last = c.run("SELECT seq, hash FROM audit_log WHERE tenant = ?"
                     " ORDER BY seq DESC LIMIT 1", (tenant,))
        seq = int(last[0]["seq"]) + 1 if last else 1
        prev = str(last[0]["hash"]) if last else GENESIS
        ts = time.time()
        body = json.dumps(redact(dict(data)), sort_keys=True, default=str)
        digest = entry_hash(prev, tenant, seq, ts, run_id, type, actor, body)
        c.run("INSERT INTO audit_log (tenant, seq, ts, run_id, type, actor, data, prev_hash,"
              " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (tenant, seq, ts, run_id, type, actor, body, prev, digest))
        crashpoints.hit("audit.append")
        return seq

    def audit_record(self, tenant: str, type: str, data: Mapping[str, Any], *,
                     run_id: str | None = None, actor: str | None = None) -> int:
        """Append one entry that no run event carries (a refused decision, an admin's
        switch change) in its own transaction; returns its sequence number."""
        with self.db.tx() as c:
            return self.audit_append(c, tenant, type, data, run_id=run_id, actor=actor)

    def audit_entries(self, tenant: str, run_id: str | None = None,
                      limit: int = 1000) -> list[dict[str, Any]]:
        """A tenant's entries in chain order (optionally one run's)."""
        sql = "SELECT * FROM audit_log WHERE tenant = ?"
        params: list[Any] = [tenant]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        rows = self.db.query(sql + " ORDER BY seq LIMIT ?", (*params, limit))
        return [{**r, "data": json.loads(r["data"])} for r in rows]

    def audit_heads(self) -> dict[str, Head]:
        """Each tenant's newest entry, to be kept outside the database as an anchor."""
        rows = self.db.query("SELECT a.tenant, a.seq, a.hash FROM audit_log a JOIN"
                             " (SELECT tenant, MAX(seq) AS seq FROM audit_log GROUP BY tenant) m"
                             " ON a.tenant = m.tenant AND a.seq = m.seq ORDER BY a.tenant")
        return {r["tenant"]: Head(r["tenant"], int(r["seq"]), r["hash"]) for r in rows}

    def verify_audit(self, tenant: str | None = None,
                     anchors: Mapping[str, Head] | None = None) -> Verification:
        """Recompute every chain (or one tenant's); the first entry that does not hold.

        With ``anchors`` (heads saved earlier, outside the database) a chain must still
        hold each anchored entry unchanged, which catches truncation and a rewritten
        suffix up to the newest anchor.
        """
        sql = "SELECT * FROM audit_log"
        params: tuple[Any, ...] = ()
        if tenant is not None:
            sql, params = sql + " WHERE tenant = ?", (tenant,)
            anchors = {t: h for t, h in (anchors or {}).items() if t == tenant}
        return verify_chain(self.db.query(sql + " ORDER BY tenant, seq", params), anchors)


def verify_chain(rows: Sequence[Mapping[str, Any]],
                 anchors: Mapping[str, Head] | None = None) -> Verification:
    """Check rows ordered by (tenant, seq): sequence, links and hashes, then the anchors."""
    prev: dict[str, tuple[int, str]] = {}
    seen: dict[tuple[str, int], str] = {}
    for r in rows:
        t = r["tenant"]
        last_seq, last_hash = prev.get(t, (0, GENESIS))
        expected = entry_hash(last_hash, t, int(r["seq"]), float(r["ts"]), r["run_id"],
                              r["type"], r["actor"], r["data"])
        if int(r["seq"]) != last_seq + 1 or r["prev_hash"] != last_hash or r["hash"] != expected:
            return Verification(False, len(rows), int(r["seq"]), t)
        prev[t] = (int(r["seq"]), r["hash"])
        seen[(t, int(r["seq"]))] = r["hash"]
    for head in sorted((anchors or {}).values(), key=lambda h: h.tenant):
        if seen.get((head.tenant, head.seq)) != head.hash:
            # The anchored entry is gone or differs: history up to it was cut or rewritten.
            return Verification(False, len(rows), head.seq, head.tenant)
    return Verification(True, len(rows))
