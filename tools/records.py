"""Connection scopes and idempotent-write helpers shared by the tool implementations."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from tools.sandbox import Connection, begin_write, connect, ensure
from tools.spec import Reconciler, ToolContext, ToolError

# Tables whose rows carry an idempotency key; guards the f-string SQL below.
KEYED_TABLES = frozenset(
    {"refunds", "outbox", "ticket_updates", "incidents", "incident_updates", "remediations"}
)


def sandbox_db(ctx: ToolContext) -> str:
    """The sandbox of a demo tool's call (a SQLite path or a PostgreSQL URL), from the demo
    pack's settings."""
    target = ctx.settings.get("db_url") or ctx.settings.get("db_path")
    if not target:
        raise RuntimeError("the demo pack is not set up: no db_path in its settings")
    return str(target)


def utc_now() -> str:
    """Current time as an ISO-8601 UTC string."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def row_dict(row: Any) -> dict[str, Any]:
    """A Row as a plain dict ({} for None)."""
    return dict(row) if row is not None else {}


@contextmanager
def reading(db_path: str) -> Iterator[Connection]:
    """A connection for reads; the sandbox is created on first use."""
    ensure(db_path)
    conn = connect(db_path)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def writing(db_path: str) -> Iterator[Connection]:
    """A connection holding the write lock; commits on success, rolls back on error."""
    ensure(db_path)
    conn = connect(db_path)
    try:
        begin_write(conn)
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def _check_table(table: str) -> None:
    if table not in KEYED_TABLES:
        raise ValueError(f"{table} has no idempotency key")


def find_by_key(conn: Connection, table: str, key: str) -> dict[str, Any] | None:
    """The row written earlier under ``key``, if any."""
    _check_table(table)
    sql = f"SELECT * FROM {table} WHERE idempotency_key = ?"  # noqa: S608 - table is allow-listed
    row = conn.execute(sql, (key,)).fetchone()
    return dict(row) if row is not None else None


def stored(conn: Connection, table: str, key: str) -> dict[str, Any]:
    """The row just written under ``key``."""
    row = find_by_key(conn, table, key)
    if row is None:
        raise RuntimeError(f"row for key {key!r} missing from {table} after insert")
    return row


def new_id(conn: Connection, table: str, prefix: str, key: str) -> str:
    """A deterministic id from the idempotency key, lengthened on a prefix collision."""
    _check_table(table)
    digest = hashlib.sha256(key.encode()).hexdigest().upper()
    sql = f"SELECT 1 FROM {table} WHERE id = ?"  # noqa: S608 - table is allow-listed
    for width in range(8, len(digest) + 1, 4):
        candidate = f"{prefix}-{digest[:width]}"
        taken = conn.execute(sql, (candidate,)).fetchone()
        if taken is None:
            return candidate
    raise ToolError(f"could not allocate an id in {table}")


def require_key(key: str) -> str:
    """Writes must carry an idempotency key, or retries could not be recognised."""
    if not key.strip():
        raise ToolError("write tools need a non-empty idempotency key")
    return key


def result(row: dict[str, Any], *, replayed: bool) -> dict[str, Any]:
    """A written row as a tool result: the key stays internal, replays are flagged."""
    out = {k: v for k, v in row.items() if k != "idempotency_key"}
    out["replayed"] = replayed
    return out


# What a write tool adds to its row in its result (the ticket it changed, say), so that a
# reconciled call answers exactly as a retried one would.
View = Callable[[Connection, dict[str, Any]], dict[str, Any]]


def keyed_result(conn: Connection, row: dict[str, Any], view: View | None, *,
                 replayed: bool) -> dict[str, Any]:
    """A keyed write's result: its row, and what ``view`` adds to it."""
    out = result(row, replayed=replayed)
    if view is not None:
        out.update(view(conn, row))
    return out


def keyed_lookup(table: str, view: View | None = None) -> Reconciler:
    """A reconciler that finds the row written under the call's idempotency key and answers
    with the tool's own result shape (``view`` as the tool applies it)."""
    _check_table(table)

    def reconcile(ctx: ToolContext) -> dict[str, Any] | None:
        with reading(sandbox_db(ctx)) as conn:
            row = find_by_key(conn, table, ctx.idempotency_key)
            return keyed_result(conn, row, view, replayed=True) if row is not None else None

    return reconcile
