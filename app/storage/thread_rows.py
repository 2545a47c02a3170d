"""The threads table: each tenant's threads under the tenant's own ids.

A row's ``id`` column holds the thread's key (see ``app.storage.thread_keys``), which every other
table refers to; ``local_id`` is the id its tenant chose, unique per tenant. Reads go by
(tenant, id), so another tenant's thread is exactly as absent as an unused id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.storage.db import Database, Row
from app.storage.thread_keys import SEPARATOR, thread_key

THREAD_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS threads (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        metadata TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        local_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS threads_tenant ON threads(tenant, updated_at)",
]
# A database from before per-tenant ids: its rows keep their (then global) id as the key.
THREAD_MIGRATION = ["ALTER TABLE threads ADD COLUMN local_id TEXT",
                    "UPDATE threads SET local_id = id WHERE local_id IS NULL"]
THREAD_INDEXES = [
    "CREATE UNIQUE INDEX IF NOT EXISTS threads_local ON threads(tenant, local_id)",
]


@dataclass(frozen=True)
class ThreadRow:
    """A thread as stored: ``id`` as its tenant knows it, ``key`` as the tables do."""

    id: str
    tenant: str
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
    key: str = ""


class ThreadRows:
    """Thread-table operations, mixed into the store."""

    db: Database

    def _thread_schema(self) -> None:
        with self.db.tx() as c:
            for statement in THREAD_SCHEMA:
                c.run(statement)
        if "local_id" not in self.db.columns("threads"):
            with self.db.tx() as c:
                for statement in THREAD_MIGRATION:
                    c.run(statement)
        with self.db.tx() as c:
            for statement in THREAD_INDEXES:
                c.run(statement)

    def create_thread(self, thread_id: str, tenant: str,
                      metadata: Mapping[str, Any] | None = None) -> bool:
        """Record the tenant's thread ``thread_id``; False when the tenant already has it
        (whatever other tenants have)."""
        now = time.time()
        with self.db.tx() as c:
            rows = c.run("INSERT INTO threads (id, local_id, tenant, metadata, created_at,"
                         " updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
                         " RETURNING id", (thread_key(tenant, thread_id), thread_id, tenant,
                                           json.dumps(dict(metadata or {})), now, now))
        return bool(rows)

    def get_thread(self, tenant: str, thread_id: str) -> ThreadRow | None:
        """The tenant's thread ``thread_id``."""
        row = self.db.one("SELECT * FROM threads WHERE tenant = ? AND local_id = ?",
                          (tenant, thread_id))
        return _thread(row) if row else None

    def thread_by_key(self, key: str) -> ThreadRow | None:
        """A thread by its key (what runs, approvals and checkpoints refer to)."""
        row = self.db.one("SELECT * FROM threads WHERE id = ?", (key,))
        return _thread(row) if row else None

    def key_of(self, tenant: str, thread_id: str) -> str:
        """The key of the tenant's thread named by its id or already by its key: the stored
        one, or the one a new thread of that id gets (a read only)."""
        if thread_id.startswith(f"{tenant}{SEPARATOR}"):
            return thread_id  # only this tenant's keys have this form
        row = self.get_thread(tenant, thread_id)
        return row.key if row is not None else thread_key(tenant, thread_id)

    def ensure_thread(self, thread_id: str, tenant: str) -> str:
        """The key of the tenant's thread named by its id or its key, created if new."""
        key = self.key_of(tenant, thread_id)
        if self.thread_by_key(key) is None:
            self.create_thread(key[len(tenant) + 1:], tenant)
        return key

    def search_threads(self, tenant: str, limit: int = 10, offset: int = 0) -> list[ThreadRow]:
        """The tenant's threads, most recently updated first."""
        rows = self.db.query("SELECT * FROM threads WHERE tenant = ?"
                             " ORDER BY updated_at DESC, id LIMIT ? OFFSET ?",
                             (tenant, limit, offset))
        return [_thread(r) for r in rows]

    def touch_thread(self, key: str, metadata: Mapping[str, Any] | None = None) -> None:
        """Bump the thread's update time (and merge metadata)."""
        with self.db.tx() as c:
            if metadata:
                row = c.run("SELECT metadata FROM threads WHERE id = ?", (key,))
                merged = {**json.loads(row[0]["metadata"]), **metadata} if row else {}
                c.run("UPDATE threads SET metadata = ? WHERE id = ?", (json.dumps(merged), key))
            c.run("UPDATE threads SET updated_at = ? WHERE id = ?", (time.time(), key))


def _thread(row: Row) -> ThreadRow:
    return ThreadRow(id=row["local_id"] or row["id"], tenant=row["tenant"],
                     metadata=json.loads(row["metadata"]), created_at=float(row["created_at"]),
                     updated_at=float(row["updated_at"]), key=row["id"])
