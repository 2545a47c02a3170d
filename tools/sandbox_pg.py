"""The demo sandbox's tables in PostgreSQL, so every worker and replica acts on one world.

The tools write SQLite-flavoured SQL (``?`` placeholders, ``INSERT OR IGNORE``); this
adapter gives them a connection with the same small surface as ``sqlite3.Connection``
(``execute``, ``executemany``, ``commit``, ``rollback``, ``close``) and rows that answer
both ``row["column"]`` and ``row[0]``. Writes serialise on one advisory lock, as SQLite's
``BEGIN IMMEDIATE`` does, so a tool's replay check and its insert stay atomic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on the first connection: the SQLite sandbox never needs it
    import psycopg

_WRITE_LOCK = 7_400_531_977  # pg_advisory_xact_lock key of sandbox writes
_SCHEMA_LOCK = 7_400_531_978  # held while the tables are created, seeded or reset
_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\s", re.IGNORECASE)


def is_url(target: object) -> bool:
    """Whether a sandbox target names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def translate(sql: str) -> str:
    """The PostgreSQL spelling of one sandbox statement."""
    ignore = bool(_IGNORE.match(sql))
    if ignore:
        sql = _IGNORE.sub("INSERT INTO ", sql, count=1)
    sql = sql.replace("%", "%%").replace("?", "%s")
    sql = re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql)
    return f"{sql} ON CONFLICT DO NOTHING" if ignore else sql


class Row:
    """A result row that behaves like ``sqlite3.Row``: by name or position, iterates its
    values, ``keys()`` names the columns (so ``dict(row)`` works)."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: Sequence[str], values: Sequence[Any]) -> None:
        self._names = tuple(names)
        self._values = tuple(values)

    def keys(self) -> list[str]:
        """The column names."""
        return list(self._names)

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return self._values[key]
        try:
            return self._values[self._names.index(key)]
        except ValueError:
            raise IndexError(f"no such column: {key}") from None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=True))!r})"


class Rows:
    """A statement's result: ``fetchone``, ``fetchall`` and iteration."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self.cursor = cursor
        self.names = [c.name for c in cursor.description] if cursor.description else []

    def fetchone(self) -> Row | None:
        """The next row, or None."""
        values = self.cursor.fetchone() if self.names else None
        return None if values is None else Row(self.names, values)

    def fetchall(self) -> list[Row]:
        """Every remaining row."""
        if not self.names:
            return []
        return [Row(self.names, values) for values in self.cursor.fetchall()]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


class PgConnection:
    """One sandbox connection (one transaction at a time, committed by the caller)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn: psycopg.Connection[Any] = psycopg.connect(url, connect_timeout=5)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Run one statement."""
        cursor = self.conn.cursor()
        cursor.execute(translate(sql), tuple(params))
        return Rows(cursor)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement per parameter row."""
        with self.conn.cursor() as cursor:
            cursor.executemany(translate(sql), [tuple(r) for r in rows])

    def lock_writes(self) -> None:
        """Take the sandbox's write lock until this transaction ends."""
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))

    def lock_schema(self) -> None:
        """Take the schema lock until this transaction ends."""
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))

    def has_tables(self) -> bool:
        """Whether the sandbox's tables exist in the connection's schema."""
        row = self.conn.execute("SELECT to_regclass('customers') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def drop_tables(self, tables: Sequence[str]) -> None:
        """Drop the sandbox's tables (names are the sandbox's own constants)."""
        for name in tables:
            self.conn.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')

    def commit(self) -> None:
        """Commit the transaction."""
        self.conn.commit()

    def rollback(self) -> None:
        """Roll the transaction back."""
        self.conn.rollback()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
