"""The app database behind one small interface: SQLite (embedded) or Postgres.

The store writes portable SQL with ``?`` placeholders; each backend adapts placeholders,
transactions and row shapes. Statements are short; callers never hold a transaction open
across an ``await``. The drivers block, so async code (a run's graph, a worker) awaits its
store steps through :meth:`Database.call`: on PostgreSQL a step runs on the database's own
threads, off the event loop; on SQLite, whose statements cost less than a thread hop, at
once.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cached_property, partial
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar
from urllib.parse import urlsplit

from app.errors import StorageError

Row = dict[str, Any]
P = ParamSpec("P")
T = TypeVar("T")


class Cursor(Protocol):
    """What a transaction hands the store: run a statement, read rows back."""

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    @property
    def connection(self) -> Any:
        """The driver's connection of the transaction (sqlite3 or psycopg)."""


class Database(ABC):
    """A connection (pool) to the app tables."""

    dialect: str

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``, a step of synchronous store calls, awaited by async code
        (a run's graph, a worker). Here it runs at once: a local SQLite file in WAL mode
        answers in tens of microseconds, less than a thread hop costs (a run's ~360
        statements took 10-14 ms inline; on a thread the run cost 45-65 ms more CPU;
        docs/scaling.md). PostgreSQL moves it off the loop."""
        return fn(*args, **kwargs)

    @abstractmethod
    @contextmanager
    def tx(self) -> Iterator[Cursor]:
        """One transaction; commits when the block ends, rolls back on error."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of one read statement."""
        with self.tx() as c:
            return c.run(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a read statement, if any."""
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def schema_lock(self) -> AbstractContextManager[None]:
        """Held while the schema is created or migrated (a no-op for one SQLite process)."""
        return nullcontext()

    def schema_once(self, part: str, definition: object, apply: Callable[[], None]) -> None:
        """Run ``apply`` (the DDL of ``part``) unless this database already has ``part`` as
        ``definition`` describes it. SQLite: always (its DDL is cheap and one process owns
        it). PostgreSQL: once per definition, recorded in ``foreman_schema`` — a process
        that starts while others write takes no table lock for DDL that is already there
        (``CREATE INDEX IF NOT EXISTS`` locks its table before it looks)."""
        apply()

    @abstractmethod
    def columns(self, table: str) -> set[str]:
        """Column names of a table (empty when it does not exist)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


class _SqliteCursor:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @property
    def connection(self) -> Any:
        """The sqlite3 connection."""
        return self.conn

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = self.conn.execute(sql, tuple(params))
        return [dict(r) for r in cur.fetchall()] if cur.description else []


class SqliteDatabase(Database):
    """One WAL-mode connection guarded by a lock (the server is a single process)."""

    dialect = "sqlite"

    def __init__(self, path: Path, synchronous: str = "normal") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.execute(f"PRAGMA synchronous={synchronous_pragma(synchronous)}")
        self._lock = threading.RLock()

    @contextmanager
    def tx(self) -> Iterator[Cursor]:
        """A ``BEGIN IMMEDIATE`` transaction, so writers queue instead of failing."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteCursor(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of one read statement, in SQLite's own implicit read transaction: a read
        needs no ``BEGIN IMMEDIATE`` (the write lock) nor a ``COMMIT`` (a WAL write)."""
        with self._lock:
            return _SqliteCursor(self._conn).run(sql, params)

    def columns(self, table: str) -> set[str]:
        """Column names from ``PRAGMA table_info``."""
        with self._lock:
            rows = self._conn.execute(f"PRAGMA table_info({table})").fetchall()
        return {r["name"] for r in rows}

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class _PgCursor:
    def __init__(self, cur: Any) -> None:
        self.cur = cur

    @property
    def connection(self) -> Any:
        """The psycopg connection of the transaction (to enqueue a job inside it)."""
        return self.cur.connection

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        # The store's SQL never holds a literal "?" or "%", so the swap is safe.
        self.cur.execute(sql.replace("?", "%s"), tuple(params))
        return list(self.cur.fetchall()) if self.cur.description else []


class PostgresDatabase(Database):
    """A psycopg connection pool; rows come back as dicts."""

    dialect = "postgres"

    def __init__(self, url: str, min_size: int = 1, max_size: int = 10) -> None:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        try:  # fail at once, naming the server, rather than after the pool's timeout
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.OperationalError as e:
            where = urlsplit(url)
            raise StorageError(f"cannot reach PostgreSQL at {where.hostname}:{where.port or 5432}"
                               f"{where.path}: {str(e).strip().splitlines()[-1]}") from e
        self.url = url
        self.threads = max_size  # one per pooled connection: more would wait on the pool
        self._pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=True,
                                    kwargs={"autocommit": True, "row_factory": dict_row})
        self._pool.wait(timeout=10)

    @cached_property
    def _calls(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="store")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on this database's threads, awaited: the event loop goes
        on serving other runs and requests while a statement makes its round trip. The
        caller's context variables go with it (the run's checkpoint fence, log fields); its
        exception is re-raised here.

        Cancelling the caller never leaves a step behind it: one still queued is dropped,
        one already running is waited for, so whoever cancelled (and then records the
        cancel) writes after it, never before it."""
        context = contextvars.copy_context()
        step = self._calls.submit(context.run, partial(fn, *args, **kwargs))
        try:
            return await asyncio.shield(asyncio.wrap_future(step))
        except asyncio.CancelledError:
            if not step.cancel():
                await asyncio.wait([asyncio.wrap_future(step)])
            raise

    def _stop_calls(self) -> None:
        if "_calls" in self.__dict__:
            self._calls.shutdown(wait=True)

    @contextmanager
    def schema_lock(self) -> Iterator[None]:
        """A session advisory lock on a connection of its own, so that every DDL statement
        of one process's start runs before or after another's, never interleaved."""
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(7310000)")
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(7310000)")

    def schema_once(self, part: str, definition: object, apply: Callable[[], None]) -> None:
        fingerprint = hashlib.sha256(repr(definition).encode()).hexdigest()[:16]
        if self._has_schema(part, fingerprint):
            return
        with self.schema_lock():
            if self._has_schema(part, fingerprint):  # another process did it meanwhile
                return
            apply()
            with self.tx() as c:
                c.run("CREATE TABLE IF NOT EXISTS foreman_schema (part TEXT PRIMARY KEY,"
                      " fingerprint TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
                c.run("INSERT INTO foreman_schema (part, fingerprint, applied_at)"
                      " VALUES (?, ?, ?) ON CONFLICT (part) DO UPDATE"
                      " SET fingerprint = excluded.fingerprint, applied_at = excluded.applied_at",
                      (part, fingerprint, time.time()))

    def _has_schema(self, part: str, fingerprint: str) -> bool:
        with self.tx() as c:
            if not c.run("SELECT to_regclass('foreman_schema') IS NOT NULL AS ok")[0]["ok"]:
                return False
            return bool(c.run("SELECT 1 AS ok FROM foreman_schema WHERE part = ?"
                              " AND fingerprint = ?", (part, fingerprint)))

    @contextmanager
    def tx(self) -> Iterator[Cursor]:
        """A transaction on a pooled connection; ``StorageError`` when the server is gone."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield _PgCursor(cur)
        except (psycopg.OperationalError, PoolTimeout) as e:
            raise StorageError(f"the database is unavailable: {type(e).__name__}") from e

    def columns(self, table: str) -> set[str]:
        """Column names from the information schema (current search path)."""
        rows = self.query("SELECT column_name FROM information_schema.columns"
                          " WHERE table_name = ? AND table_schema = current_schema()", (table,))
        return {r["column_name"] for r in rows}

    def close(self) -> None:
        """Close the pool (steps in flight on :meth:`call`'s threads finish first)."""
        self._stop_calls()
        self._pool.close()


def synchronous_pragma(level: str) -> str:
    """The PRAGMA value for a configured level (checked, as it is spliced into SQL)."""
    if level not in ("normal", "full"):
        raise ValueError(f"synchronous must be normal or full, not {level!r}")
    return level.upper()


def open_database(url: str | None, sqlite_path: Path, min_size: int = 1,
                  max_size: int = 10, synchronous: str = "normal") -> Database:
    """Postgres when ``url`` is set, else SQLite at ``sqlite_path``."""
    if url:
        return PostgresDatabase(url, min_size, max_size)
    return SqliteDatabase(sqlite_path, synchronous)
