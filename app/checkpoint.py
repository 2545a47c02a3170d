"""The LangGraph checkpointer: SQLite under the data dir (WAL, busy timeout) or Postgres;
a thread's size in it, and pruning of finished threads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver


@asynccontextmanager
async def sqlite_saver(path: Path,
                       synchronous: str = "normal") -> AsyncIterator[AsyncSqliteSaver]:
    """An ``AsyncSqliteSaver`` on its own connection, set up and closed with the block.

    WAL with ``synchronous`` (see ``StorageConfig``): at ``normal`` a step's commit costs no
    fsync, and a killed process still finds every committed step on restart.
    """
    level = {"normal": "NORMAL", "full": "FULL"}.get(synchronous)
    if level is None:
        raise ValueError(f"synchronous must be normal or full, not {synchronous!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={level}")
        await conn.execute("PRAGMA busy_timeout=5000")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        yield saver
    finally:
        await conn.close()


@asynccontextmanager
async def postgres_saver(url: str, min_size: int = 1,
                         max_size: int = 10) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """An ``AsyncPostgresSaver`` on a pool opened here (autocommit, dict rows), set up."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False,
        kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": 0})
    await pool.open(wait=True, timeout=10)
    try:
        saver = AsyncPostgresSaver(pool)
        await saver.setup()
        yield saver
    finally:
        await pool.close()


@asynccontextmanager
async def open_saver(database_url: str | None, data_dir: Path, min_size: int = 1,
                     max_size: int = 10, synchronous: str = "normal",
                     ) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """Postgres when a database URL is set, else SQLite under the data dir."""
    if database_url:
        async with postgres_saver(database_url, min_size, max_size) as pg:
            yield pg
    else:
        async with sqlite_saver(data_dir / "checkpoints.db", synchronous) as lite:
            yield lite
@dataclass(frozen=True)
class ThreadSize:
    """What a thread holds in the checkpointer."""

    checkpoints: int
    writes: int
    bytes: int


async def thread_size(saver: BaseCheckpointSaver[Any], thread_id: str) -> ThreadSize | None:
    """Rows and bytes (checkpoint + metadata + pending writes) of a thread; None when the
    saver is not the SQLite one."""
    if not isinstance(saver, AsyncSqliteSaver):
        return None
    async with saver.lock:
        async with saver.conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(length(checkpoint) + length(metadata)), 0)"
                " FROM checkpoints WHERE thread_id = ?", (thread_id,)) as cur:
            cps, cp_bytes = await cur.fetchone() or (0, 0)
        async with saver.conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(length(value)), 0) FROM writes"
                " WHERE thread_id = ?", (thread_id,)) as cur:
            writes, w_bytes = await cur.fetchone() or (0, 0)
    return ThreadSize(int(cps), int(writes), int(cp_bytes) + int(w_bytes))


async def prune_finished(saver: BaseCheckpointSaver[Any], thread_id: str) -> None:
    """Drop a finished thread's specialist-loop checkpoints (every namespace but the root).

    They are most of a thread's bytes and only matter while a run is in flight; the root
    checkpoints stay, so the thread's history and its next run are untouched. Only the
    SQLite saver is pruned here; Postgres deployments prune with their own retention job.
    """
    if not isinstance(saver, AsyncSqliteSaver):
        return
    async with saver.lock:
        for table in ("checkpoints", "writes"):
            await saver.conn.execute(
                f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns != ''",  # noqa: S608
                (thread_id,))
        await saver.conn.commit()
