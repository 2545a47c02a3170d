"""The bundled systems-of-record sandbox: a small database the demo tools act on.

A target is a SQLite file (the default, ``<data_dir>/sandbox.db``) or a PostgreSQL URL
(``tools.sandbox_pg``), so workers on several machines share one world.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tools import sandbox_pg

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    tier TEXT NOT NULL CHECK (tier IN ('gold', 'silver', 'standard'))
);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    item TEXT NOT NULL,
    amount_usd REAL NOT NULL CHECK (amount_usd >= 0),
    status TEXT NOT NULL,
    shipped_at TEXT,
    notes TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(id),
    amount_usd REAL NOT NULL,
    charged_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    order_id TEXT REFERENCES orders(id),
    subject TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'pending', 'closed')),
    notes TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS ticket_updates (
    id TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL REFERENCES tickets(id),
    status TEXT NOT NULL,
    note TEXT NOT NULL,
    created_at TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(id),
    amount_usd REAL NOT NULL CHECK (amount_usd > 0),
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    to_email TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    environment TEXT NOT NULL CHECK (environment IN ('prod', 'staging')),
    status TEXT NOT NULL CHECK (status IN ('healthy', 'degraded', 'down')),
    replicas INTEGER NOT NULL,
    version TEXT NOT NULL,
    previous_version TEXT,
    error_rate REAL NOT NULL,
    p95_latency_ms INTEGER NOT NULL,
    min_healthy_replicas INTEGER,
    baseline_p95_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL REFERENCES services(name),
    severity TEXT NOT NULL CHECK (severity IN ('sev1', 'sev2', 'sev3', 'sev4')),
    status TEXT NOT NULL CHECK (status IN ('open', 'mitigated', 'resolved')),
    summary TEXT NOT NULL,
    created_at TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS incident_updates (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    message TEXT NOT NULL,
    status TEXT,
    created_at TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS remediations (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL REFERENCES services(name),
    action TEXT NOT NULL CHECK (action IN ('restart', 'scale', 'rollback')),
    detail TEXT NOT NULL,
    created_at TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS runbooks (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL REFERENCES services(name),
    title TEXT NOT NULL,
    body TEXT NOT NULL
);
"""

_CUSTOMERS = [
    ("C-1001", "Ada Lovelace", "ada@example.com", "gold"),
    ("C-1002", "Grace Hopper", "grace@example.com", "silver"),
    ("C-1003", "Alan Turing", "alan@example.com", "standard"),
]

_ORDERS = [
    ("O-5001", "C-1001", "Desk lamp", 24.00, "delivered", "2025-01-06T10:00:00Z", ""),
    ("O-5002", "C-1001", "Espresso machine", 189.00, "delivered", "2025-01-08T09:30:00Z", ""),
    (
        "O-5003",
        "C-1002",
        "Noise-cancelling headphones",
        129.50,
        "shipped",
        "2025-01-12T15:45:00Z",
        "In transit with the carrier; estimated delivery in 2 business days.",
    ),
    (
        "O-5004",
        "C-1003",
        "Mechanical keyboard",
        89.00,
        "delivered",
        "2025-01-03T11:20:00Z",
        "Payment captured twice: duplicate charge of 89.00 USD.",
    ),
]

_PAYMENTS = [
    ("P-7001", "O-5001", 24.00, "2025-01-05T08:00:00Z"),
    ("P-7002", "O-5002", 189.00, "2025-01-07T12:10:00Z"),
    ("P-7003", "O-5003", 129.50, "2025-01-11T18:05:00Z"),
    ("P-7004", "O-5004", 89.00, "2025-01-02T14:00:00Z"),
    ("P-7005", "O-5004", 89.00, "2025-01-02T14:00:07Z"),
]

_TICKETS = [
    ("T-9001", "C-1001", "O-5002", "Espresso machine arrived broken", "open", ""),
    ("T-9002", "C-1002", "O-5003", "Where is my order?", "open", ""),
    ("T-9003", "C-1003", "O-5004", "Charged twice", "open", ""),
]

# (name, env, status, replicas, version, previous, error_rate, p95, min_healthy, baseline_p95)
_SERVICES = [
    ("checkout-api", "prod", "degraded", 3, "v4.2.0", "v4.1.3", 0.23, 850, None, 180),
    ("payments-worker", "prod", "healthy", 2, "v1.8.0", "v1.7.4", 0.002, 2400, 4, 300),
    ("search-api", "prod", "degraded", 3, "v2.3.1", "v2.3.0", 0.15, 620, None, 120),
    ("inventory-api", "staging", "healthy", 1, "v0.9.2", None, 0.001, 95, None, 95),
]

_RUNBOOKS = [
    (
        "RB-1",
        "checkout-api",
        "High 5xx rate",
        "1. Restart the service (restart_service) and watch the error rate.\n"
        "2. If errors persist after the restart, roll back to the previous version "
        "(rollback_service).\n"
        "3. Post an incident update after each step.",
    ),
    (
        "RB-2",
        "payments-worker",
        "Latency above SLO",
        "1. Check p95 latency; the SLO is 500 ms.\n"
        "2. Scale out to 4 replicas (scale_service) to drain the queue.\n"
        "3. Post an incident update once latency is back under the SLO.",
    ),
    (
        "RB-3",
        "search-api",
        "Errors after deploy",
        "1. Confirm the error rate rose after the latest deploy.\n"
        "2. Roll back to the previous version (rollback_service).\n"
        "3. Post an incident update with the version rolled back to.",
    ),
]


TABLES = (
    "customers", "orders", "payments", "tickets", "ticket_updates", "refunds", "outbox",
    "services", "incidents", "incident_updates", "remediations", "runbooks",
)
"""Every sandbox table, for tools that list or print them."""


def _statements() -> list[str]:
    return [s.strip() for s in SCHEMA.split(";") if s.strip()]


class Result(Protocol):
    """What a statement hands back: rows by name and position."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Any: ...


class Connection(Protocol):
    """The part of ``sqlite3.Connection`` the tools use; the PostgreSQL adapter has it too."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Result: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


Target = str | Path


def connect(target: Target) -> Connection:
    """Open the sandbox: SQLite with WAL, a busy timeout, Row results and foreign keys, or
    a PostgreSQL connection when ``target`` is a URL."""
    if sandbox_pg.is_url(target):
        return sandbox_pg.PgConnection(str(target))
    conn = sqlite3.connect(str(target), timeout=5.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def begin_write(conn: Connection) -> None:
    """Take the write lock up front, so a replay check and its insert are atomic."""
    if isinstance(conn, sandbox_pg.PgConnection):
        conn.lock_writes()
    else:
        conn.execute("BEGIN IMMEDIATE")


def seed(conn: Connection) -> None:
    """Insert the fixed seed rows (existing rows are left alone). Does not commit."""
    conn.executemany("INSERT OR IGNORE INTO customers VALUES (?, ?, ?, ?)", _CUSTOMERS)
    conn.executemany("INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)", _ORDERS)
    conn.executemany("INSERT OR IGNORE INTO payments VALUES (?, ?, ?, ?)", _PAYMENTS)
    conn.executemany("INSERT OR IGNORE INTO tickets VALUES (?, ?, ?, ?, ?, ?)", _TICKETS)
    conn.executemany(
        "INSERT OR IGNORE INTO services VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _SERVICES
    )
    conn.executemany("INSERT OR IGNORE INTO runbooks VALUES (?, ?, ?, ?)", _RUNBOOKS)


def _create(conn: Connection) -> None:
    for stmt in _statements():
        conn.execute(stmt)


def _has_tables(conn: Connection) -> bool:
    if isinstance(conn, sandbox_pg.PgConnection):
        return conn.has_tables()
    row = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'customers'"
    ).fetchone()
    return bool(row[0])


def _open_for_schema(target: Target) -> Connection:
    """A connection holding the schema lock (SQLite: its write lock)."""
    if sandbox_pg.is_url(target):
        pg = sandbox_pg.PgConnection(str(target))
        pg.lock_schema()
        return pg
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    return connect(target)


def reset(target: Target) -> None:
    """Drop every table, recreate the schema and seed it (creates parent dirs)."""
    conn = _open_for_schema(target)
    try:
        if isinstance(conn, sandbox_pg.PgConnection):
            conn.drop_tables(TABLES)
        else:
            # Dropping in any order needs FK enforcement off; the pragma is a no-op inside
            # a transaction, so it is set before BEGIN.
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("BEGIN IMMEDIATE")
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            ]
            for name in names:
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')
        _create(conn)
        seed(conn)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


_ready: set[str] = set()  # targets this process saw seeded: tool calls skip the probe


def ensure(target: Target) -> None:
    """Create and seed the sandbox if it is missing; otherwise leave it untouched."""
    url = sandbox_pg.is_url(target)
    if str(target) in _ready and (url or Path(target).exists()):
        return  # every tool call ensures: one probe per process, not one per call
    if not url:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    probe = connect(target)
    try:
        if _has_tables(probe):
            _ready.add(str(target))
            return
    finally:
        probe.close()
    conn = _open_for_schema(target)
    try:
        # Re-check under the lock so two first callers do not both seed.
        if not isinstance(conn, sandbox_pg.PgConnection):
            conn.execute("BEGIN IMMEDIATE")
        if not _has_tables(conn):
            _create(conn)
            seed(conn)
        conn.commit()
        _ready.add(str(target))
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
