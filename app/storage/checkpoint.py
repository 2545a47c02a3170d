"""The LangGraph checkpointer: SQLite under the data dir (WAL, busy timeout) or Postgres,
with compressed payloads; a thread's size in it, and pruning of finished threads.

What a checkpoint stores: the SQLite saver writes every channel's value into every
checkpoint, so the state keeps what grows over a run (step results, facts, the ledger, a
specialist's messages) in ``DeltaChannel`` s (see ``graphs/state.py``), which a checkpoint
stores as the writes of the step that made them. What is left per checkpoint (small values,
channel versions) is repetitive, so payloads above a few hundred bytes are zlib-compressed.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from app.runs import crashpoints
from app.storage.checkpoint_fence import FencedSqliteSaver
from app.storage.db import synchronous_pragma

COMPRESSED = "+zlib"  # suffix of the type tag of a compressed payload


class CompressingSerializer(JsonPlusSerializer):
    """LangGraph's default serializer, with payloads of ``threshold`` bytes or more stored
    zlib-compressed (when that is smaller) and their type tagged ``<type>+zlib``.

    Loading takes both forms, so checkpoints written before compression still load. A
    subclass rather than a wrapper, so LangGraph's msgpack allow-list (strict mode) still
    applies to it.
    """

    def __init__(self, *, threshold: int = 256, level: int = 6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.level = level

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        typ, data = super().dumps_typed(obj)
        if len(data) >= self.threshold:
            packed = zlib.compress(data, self.level)
            if len(packed) < len(data):
                return typ + COMPRESSED, packed
        return typ, data

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        typ, blob = data
        if typ.endswith(COMPRESSED):
            return super().loads_typed((typ.removesuffix(COMPRESSED), zlib.decompress(blob)))
        return super().loads_typed(data)


@asynccontextmanager
async def sqlite_saver(path: Path, synchronous: str = "normal", *,
                       compress: bool = True) -> AsyncIterator[AsyncSqliteSaver]:
    """An ``AsyncSqliteSaver`` on its own connection, set up and closed with the block
    (its writes fenced by the claim of the run being driven: ``app.storage.checkpoint_fence``).

    WAL with ``synchronous`` (see ``StorageConfig``): at ``normal`` a step's commit costs no
    fsync, and a killed process still finds every committed step on restart.
    ``compress=False`` keeps LangGraph's default serializer (the benchmarks' baseline).
    """
    level = synchronous_pragma(synchronous)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={level}")
        await conn.execute("PRAGMA busy_timeout=5000")
        saver = FencedSqliteSaver(conn, serde=CompressingSerializer() if compress else None)
        await saver.setup()
        crashpoints.watch_saver(saver)
        yield saver
    finally:
        await conn.close()


@asynccontextmanager
async def postgres_saver(url: str, min_size: int = 1,
                         max_size: int = 10) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """An ``AsyncPostgresSaver`` on a pool opened here (autocommit, dict rows), set up; its
    writes commit with the check of the driven run's claim (``app.storage.checkpoint_fence``)."""
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    from app.storage.checkpoint_pg import FencedPostgresSaver

    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False,
        kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": 0})
    await pool.open(wait=True, timeout=10)
    try:
        saver = FencedPostgresSaver(pool, serde=CompressingSerializer())
        await saver.setup()
        crashpoints.watch_saver(saver)
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

    They only matter while a run is in flight; the root checkpoints and writes stay, so the
    thread's history and its next run are untouched. The root state's delta channels are
    rebuilt from root rows alone (their ancestors' writes back to the last snapshot), so
    nothing deleted here is ever read again. Only the SQLite saver is pruned here; a
    Postgres retention job must likewise keep a thread's root checkpoints and writes (or
    drop the whole thread): deleting old root rows alone would lose those channels' values.
    """
    if not isinstance(saver, AsyncSqliteSaver):
        return
    async with saver.lock:
        for table in ("checkpoints", "writes"):
            await saver.conn.execute(
                f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_ns != ''",  # noqa: S608
                (thread_id,))
        await saver.conn.commit()
