"""The events table's rows: each run's events in order, each with its audit entry when its
type is audited (``app.governance.audit``), mixed into the store.

A sequence number comes from the run row's counter, taken under that row's lock, so writers
in any number of processes get distinct, gapless numbers; with a claim's epoch an append
only lands while the claim holds (``LeaseLost`` otherwise).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from app.governance.audit import AuditLog, audit_entry
from app.runs.claims import LeaseLost
from app.storage.db import Cursor


class EventRows(AuditLog):
    """Event-table operations (and their audit entries), mixed into the store."""

    def append_event(self, run_id: str, type: str, data: Mapping[str, Any]) -> int:
        """Persist the run's next event (and its audit entry); returns its sequence number."""
        with self.db.tx() as c:
            return self.event_in(c, run_id, type, data)

    def append_events(self, run_id: str,
                      batch: Sequence[tuple[str, Mapping[str, Any], str]]) -> list[int]:
        """Persist the run's next events — ``(type, data, data as JSON)`` each, in order —
        in one transaction: all of them or none. Their sequence numbers."""
        with self.db.tx() as c:
            return self.events_in(c, run_id, batch)

    def event_in(self, c: Cursor, run_id: str, type: str, data: Mapping[str, Any],
                 actor: str | None = None, *, epoch: int | None = None,
                 text: str | None = None) -> int:
        """Append an event inside the caller's transaction, with its audit entry if audited
        (module doc). ``text`` is ``data`` already serialised, when the caller has it."""
        return self.events_in(c, run_id, [(type, data, text)], actor, epoch=epoch)[0]

    def events_in(self, c: Cursor, run_id: str,
                  batch: Sequence[tuple[str, Mapping[str, Any], str | None]],
                  actor: str | None = None, *, epoch: int | None = None) -> list[int]:
        """:meth:`event_in` of several events in order: the run's counter moves once for all
        of them (one statement, not one per event)."""
        n = len(batch)
        if epoch is None:
            run = c.run("UPDATE runs SET last_seq = last_seq + ? WHERE id = ?"
                        " RETURNING last_seq, tenant, created_by", (n, run_id))
        else:
            run = c.run("UPDATE runs SET last_seq = last_seq + ? WHERE id = ? AND epoch = ?"
                        " RETURNING last_seq, tenant, created_by", (n, run_id, epoch))
        if run:
            first, tenant = int(run[0]["last_seq"]) - n + 1, str(run[0]["tenant"])
        elif epoch is not None:
            raise LeaseLost(f"run {run_id} is no longer held at epoch {epoch}")
        else:  # events of a run that is not recorded (tests, old rows): no counter to take
            row = c.run("SELECT COALESCE(MAX(seq), 0) AS n FROM events WHERE run_id = ?",
                        (run_id,))
            first, tenant = int(row[0]["n"]) + 1, "default"
        now = time.time()
        seqs = list(range(first, first + n))
        for seq, (type, data, text) in zip(seqs, batch, strict=True):
            c.run("INSERT INTO events (run_id, seq, type, data, ts, tenant, epoch) VALUES"
                  " (?, ?, ?, ?, ?, ?, ?)",
                  (run_id, seq, type, json.dumps(data, default=str) if text is None else text,
                   now, tenant, epoch))
            entry = audit_entry(type, data)
            if entry is not None:
                who = actor or (data.get("by") if type == "approval_decided" else None)
                if who is None and type == "run_started" and run:
                    who = run[0]["created_by"]
                self.audit_append(c, tenant, type, entry, run_id=run_id,
                                  actor=str(who) if who is not None else None)
        return seqs

    def events(self, run_id: str, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """The run's events after sequence ``after``, in order."""
        rows = self.db.query("SELECT seq, type, data, ts FROM events WHERE run_id = ?"
                             " AND seq > ? ORDER BY seq LIMIT ?", (run_id, after, limit))
        return [{"seq": r["seq"], "type": r["type"], "data": json.loads(r["data"]),
                 "ts": r["ts"]} for r in rows]

    def event_epochs(self, run_id: str) -> list[tuple[int, int | None]]:
        """(sequence number, epoch of the claim that wrote it) of each of the run's events."""
        rows = self.db.query("SELECT seq, epoch FROM events WHERE run_id = ? ORDER BY seq",
                             (run_id,))
        return [(int(r["seq"]), r["epoch"]) for r in rows]
