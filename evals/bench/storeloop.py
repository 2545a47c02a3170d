"""Figure 13: a worker's event loop while its runs write to PostgreSQL (needs the loopback
PostgreSQL; ``FOREMAN_BENCH_DATABASE_URL`` names another).

``RUNS`` runs at once in one process, as a worker with that concurrency drives them, with
``LATENCY_MS`` scripted models. A probe task asks the loop for a 5 ms sleep over and over;
how late it wakes is the loop's lag: what every other run, heartbeat and abort on that loop
waits. Two phases side by side in one process, each on a schema of its own: the product
path (``Database.call`` runs each store step on the database's threads, the run's events
are queued and stored off the loop) against the same code with every store step run on the
loop (``call`` made inline), which is how a worker stored its runs before. Printed: lag p99
and max, wall time, CPU per run (this process, every thread).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from app.services import open_services
from app.storage.db import PostgresDatabase
from evals.bench.approval import percentile
from evals.bench.scenario import bench_settings
from evals.bench.stats import Row, Stat, ratios

RUNS = 16
LATENCY_MS = 50
PROBE_S = 0.005
TEAM = "support"
WHERE = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


class LagProbe:
    """While the block runs, a task asks the loop for ``PROBE_S`` sleeps over and over;
    ``lags`` holds how late each woke (seconds)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LagProbe:
        self._task = asyncio.create_task(self._probe())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._done.set()
        if self._task is not None:
            await self._task

    async def _probe(self) -> None:
        while not self._done.is_set():
            asked = time.perf_counter()
            await asyncio.sleep(PROBE_S)
            self.lags.append(time.perf_counter() - asked - PROBE_S)


async def _inline(self: PostgresDatabase, fn: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


async def _phase(config: Path | None, workdir: Path, base_url: str, inline: bool
                 ) -> dict[str, float]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(base_url, autocommit=True)
    admin.execute(f"CREATE SCHEMA {schema}")
    original = PostgresDatabase.call
    if inline:
        PostgresDatabase.call = _inline  # type: ignore[method-assign]
    try:
        settings = bench_settings(config, workdir / schema, latency_ms=LATENCY_MS)
        settings = settings.model_copy(update={
            "database_url": f"{base_url}?options=-csearch_path%3D{schema}"})
        async with open_services(settings) as services:
            await services.runner.start(WHERE, TEAM)  # warm: graphs compiled, pools open
            async with LagProbe() as probe:
                cpu, started = time.process_time(), time.perf_counter()
                results = await asyncio.gather(*[services.runner.start(WHERE, TEAM)
                                                 for _ in range(RUNS)])
                wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            lags = probe.lags
    finally:
        PostgresDatabase.call = original  # type: ignore[method-assign]
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
    ok = sum(1 for r in results if r.status == "success")
    return {"p99_ms": percentile(lags, 0.99) * 1000, "max_ms": max(lags) * 1000,
            "wall_s": wall, "cpu_ms": cpu / RUNS * 1000, "ok": ok}


async def storeloop_figures(config: Path | None, workdir: Path, reps: int) -> list[Row]:
    """Figure 13's rows: off the loop against on it, ``reps`` pairs."""
    base = os.environ.get("FOREMAN_BENCH_DATABASE_URL", PG_URL)
    off: list[dict[str, float]] = []
    on: list[dict[str, float]] = []
    for _ in range(max(1, reps)):
        on.append(await _phase(config, workdir, base, inline=True))
        off.append(await _phase(config, workdir, base, inline=False))

    def row(key: str, label: str, unit: str, digits: str = "") -> Row:
        mine, theirs = [m[key] for m in off], [m[key] for m in on]
        return Row("13 worker loop", label, Stat.of(mine), unit, Stat.of(theirs),
                   "store steps on the loop", ratios(mine, theirs),
                   detail={"runs": RUNS, "latency_ms": LATENCY_MS,
                           "succeeded": [m["ok"] for m in off],
                           "succeeded_on_loop": [m["ok"] for m in on]})

    return [row("p99_ms", f"loop lag p99, {RUNS} runs at once", "ms"),
            row("max_ms", "loop lag max", "ms"),
            row("wall_s", f"wall, {RUNS} runs", "s"),
            row("cpu_ms", "CPU per run (process)", "ms")]
