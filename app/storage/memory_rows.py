"""Run-memory notes waiting for their vectors, kept in the app database.

A note is written here when its step ends (a few statements, well under a millisecond) and
embedded into Chroma the first time its thread is recalled (``app.knowledge.memory``). In
distributed mode this is the shared PostgreSQL, so a thread's next run finds its notes on
any worker. A row is one note's latest version: ``write_id`` names the version, so moving a
note to Chroma drops only the version it moved.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from app.storage.db import Database

MEMORY_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS memory_pending (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    write_id TEXT NOT NULL,
    text TEXT NOT NULL,
    meta TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS memory_pending_thread ON memory_pending (tenant, thread_id)",
)


class MemoryRows:
    """Pending memory notes, mixed into the store (``app.knowledge.memory.PendingNotes``)."""

    db: Database

    def _memory_schema(self) -> None:
        with self.db.tx() as c:
            for statement in MEMORY_SCHEMA:
                c.run(statement)

    def put_pending(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store notes (``id``, ``tenant``, ``thread_id``, ``write_id``, ``text``, ``meta``);
        a note already pending is replaced by its newer version."""
        now = time.time()
        with self.db.tx() as c:
            for r in rows:
                c.run("INSERT INTO memory_pending (id, tenant, thread_id, write_id, text, meta,"
                      " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
                      " SET write_id = excluded.write_id, text = excluded.text,"
                      " meta = excluded.meta, created_at = excluded.created_at",
                      (r["id"], r["tenant"], r["thread_id"], r["write_id"], r["text"],
                       json.dumps(r["meta"], sort_keys=True), now))

    def pending_of(self, tenant: str, thread_id: str) -> list[dict[str, Any]]:
        """The thread's pending notes, oldest first."""
        rows = self.db.query("SELECT id, tenant, thread_id, write_id, text, meta"
                             " FROM memory_pending WHERE tenant = ? AND thread_id = ?"
                             " ORDER BY created_at, id", (tenant, thread_id))
        return [{**r, "meta": json.loads(r["meta"])} for r in rows]

    def drop_pending(self, moved: Sequence[tuple[str, str]]) -> None:
        """Drop the (``id``, ``write_id``) versions moved to Chroma; a newer version of the
        same note, written meanwhile, stays pending."""
        with self.db.tx() as c:
            for note_id, write_id in moved:
                c.run("DELETE FROM memory_pending WHERE id = ? AND write_id = ?",
                      (note_id, write_id))
