"""Figure 14: what a store step costs on PostgreSQL by the driver it goes through (needs the
loopback PostgreSQL; ``FOREMAN_BENCH_DATABASE_URL`` names another).

The app store is synchronous psycopg behind ``Database.call``, which runs each step on the
database's own threads (docs/scaling.md, "A run's store steps"). The alternative is
psycopg's ``AsyncConnectionPool`` on the event loop. Both phases run the same transaction,
the shape of a run's event batch (move the run's counter and read it back, insert the
event, read the run's latest event), from ``TASKS`` coroutines at once, ``STEPS`` each, on
a pool of the same size, while a probe measures the loop's lag as figure 13 does. The
baseline is the async pool; printed: CPU per transaction (this process, every thread), wall
time and loop lag p99. Printed, not asserted.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from app.storage.db import PostgresDatabase
from evals.bench.approval import percentile
from evals.bench.stats import Row, Stat, ratios
from evals.bench.storeloop import PG_URL, LagProbe

TASKS = 16
STEPS = 150
POOL = 10
FIGURE = "14 store driver"
MOVE = "UPDATE bench_runs SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq"
ADD = "INSERT INTO bench_events (run_id, seq, data) VALUES (?, ?, ?)"
LATEST = "SELECT seq, data FROM bench_events WHERE run_id = ? ORDER BY seq DESC LIMIT 1"
DATA = '{"type": "model_call", "prompt_tokens": 812, "completion_tokens": 64}'


def _thread_step(db: PostgresDatabase, run: str) -> None:
    with db.tx() as c:
        seq = c.run(MOVE, (run,))[0]["last_seq"]
        c.run(ADD, (run, seq, DATA))
        c.run(LATEST, (run,))


async def _async_step(pool: AsyncConnectionPool[Any], run: str) -> None:
    async with pool.connection() as conn, conn.transaction():
        seq = (await (await conn.execute(MOVE.replace("?", "%s"), (run,))).fetchall())[0][0]
        await conn.execute(ADD.replace("?", "%s"), (run, seq, DATA))
        await (await conn.execute(LATEST.replace("?", "%s"), (run,))).fetchall()


async def _measure(step: Callable[[str], Awaitable[None]], runs: list[str]
                   ) -> dict[str, float]:
    async def task(run: str) -> None:
        for _ in range(STEPS):
            await step(run)

    async with LagProbe() as probe:
        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(task(r) for r in runs))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"cpu_us": cpu / (len(runs) * STEPS) * 1e6, "wall_s": wall,
            "p99_ms": percentile(probe.lags, 0.99) * 1000}


async def _phases(url: str) -> tuple[dict[str, float], dict[str, float]]:
    runs = [f"r{i}" for i in range(TASKS)]
    db = PostgresDatabase(url, min_size=POOL, max_size=POOL)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url, min_size=POOL, max_size=POOL, open=False, kwargs={"autocommit": True})
    await pool.open(wait=True)
    try:
        with db.tx() as c:
            c.run("CREATE TABLE bench_runs (id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)")
            c.run("CREATE TABLE bench_events (run_id TEXT, seq INTEGER, data TEXT,"
                  " PRIMARY KEY (run_id, seq))")
            for r in runs:
                c.run("INSERT INTO bench_runs (id, last_seq) VALUES (?, 0)", (r,))

        async def threaded(run: str) -> None:
            await db.call(_thread_step, db, run)

        await _measure(threaded, runs[:2])  # warm both: threads started, statements prepared
        await _measure(lambda r: _async_step(pool, r), runs[:2])
        out = (await _measure(threaded, runs),
               await _measure(lambda r: _async_step(pool, r), runs))
        with db.tx() as c:  # every transaction of both phases landed, in order
            counts = c.run("SELECT r.last_seq AS seq, COUNT(e.seq) AS n, MAX(e.seq) AS top"
                           " FROM bench_runs r LEFT JOIN bench_events e ON e.run_id = r.id"
                           " GROUP BY r.id, r.last_seq")
        want = [2 * STEPS + (2 * STEPS if i < 2 else 0) for i in range(TASKS)]
        if sorted(int(r["n"]) for r in counts) != sorted(want) or any(
                r["seq"] != r["n"] or r["top"] != r["n"] for r in counts):
            raise RuntimeError(f"figure 14's transactions did not all land: {counts}")
        return out
    finally:
        await pool.close()
        db.close()


async def driver_figures(reps: int) -> list[Row]:
    """Figure 14's rows: the product's threads against psycopg's async pool, ``reps`` pairs,
    each pair on a schema of its own."""
    base = os.environ.get("FOREMAN_BENCH_DATABASE_URL", PG_URL)
    threads: list[dict[str, float]] = []
    pooled: list[dict[str, float]] = []
    for _ in range(max(1, reps)):
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
            try:
                mine, theirs = await _phases(f"{base}?options=-csearch_path%3D{schema}")
            finally:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
        threads.append(mine)
        pooled.append(theirs)

    def row(key: str, label: str, unit: str) -> Row:
        mine, theirs = [m[key] for m in threads], [m[key] for m in pooled]
        return Row(FIGURE, label, Stat.of(mine), unit, Stat.of(theirs),
                   "psycopg AsyncConnectionPool", ratios(mine, theirs),
                   detail={"tasks": TASKS, "steps": STEPS, "pool": POOL,
                           "statements_per_transaction": 3})

    return [row("cpu_us", f"CPU per transaction, sync psycopg on the store's threads "
                          f"({TASKS} at once)", "us"),
            row("wall_s", f"wall, {TASKS * STEPS} transactions", "s"),
            row("p99_ms", "loop lag p99", "ms")]
