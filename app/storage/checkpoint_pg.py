"""The PostgreSQL checkpoint saver whose writes commit with the check of the driven run's
claim (see ``app.storage.checkpoint_fence``); imported only when a database URL is set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.postgres import _ainternal
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row

from app.runs.claims import FENCE_LOCK, LeaseLost
from app.storage.checkpoint_fence import current_fence


class FencedPostgresSaver(AsyncPostgresSaver):
    """The PostgreSQL saver whose writes commit in one transaction with the epoch check.

    Every write of the upstream saver (``aput``, ``aput_writes``, ``adelete_thread``) goes
    through ``_cursor(pipeline=True)``; under a fence that cursor is a transaction opened
    with the check.
    """

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[Any]:
        fence = current_fence()
        if fence is None or not pipeline or self.pipe is not None:
            async with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        await fence.before_write()
        async with (self.lock, _ainternal.get_connection(self.conn) as conn,
                    conn.transaction(),
                    conn.cursor(binary=True, row_factory=dict_row) as cur):
            await cur.execute("SELECT pg_advisory_xact_lock_shared(%s, hashtext(%s))",
                              (FENCE_LOCK, fence.run_id))
            await cur.execute("SELECT 1 FROM runs WHERE id = %s AND epoch = %s",
                              (fence.run_id, fence.epoch))
            if await cur.fetchone() is None:
                raise LeaseLost(f"run {fence.run_id} is no longer held at epoch "
                                f"{fence.epoch}: checkpoint write refused")
            yield cur
