"""Figure 4's CPU baseline: the raw-LangGraph graph of the same shape under the same load.

The load's runs are counted off the server's own database (how many delegations each made);
then as many raw-LangGraph runs (``evals.bench.baseline``: plan, one ``Send`` per delegation
into a one-node subgraph, verify, final) of that many delegations run all at once in this
process, on a SQLite saver with the server's durability, and this process's CPU is read.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from app.storage.checkpoint import sqlite_saver
from evals.bench.baseline import build_baseline


def delegations_per_run(db: Path) -> int:
    """The median number of delegations (``agent_started`` events) of the runs in ``db``."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        counts = [int(n) for (n,) in conn.execute(
            "SELECT COUNT(*) FROM events WHERE type = 'agent_started' GROUP BY run_id")]
    if not counts:
        raise RuntimeError(f"no delegations recorded in {db}")
    return round(statistics.median(counts))


async def baseline_cpu_ms(workdir: Path, runs: int, rounds: int,
                          synchronous: str = "normal") -> float:
    """CPU milliseconds per run of ``runs`` raw-LangGraph runs of ``rounds`` delegations,
    all at once, durable on a SQLite saver (LangGraph's default serializer)."""
    async with sqlite_saver(workdir / "raw-checkpoints.db", synchronous,
                            compress=False) as saver:
        graph = build_baseline(saver)

        async def one() -> None:
            config: Any = {"configurable": {"thread_id": f"raw-{uuid.uuid4().hex[:12]}"},
                      "recursion_limit": rounds * 4 + 20}
            out = await graph.ainvoke({"task": "raw", "rounds": rounds}, config,
                                      durability="sync")
            if len(out["results"]) != rounds:
                raise RuntimeError("raw-LangGraph run did the wrong number of delegations")

        await one()  # warm-up: the first connection, the graph's first compile paths
        started = time.process_time()
        await asyncio.gather(*(one() for _ in range(runs)))
        return (time.process_time() - started) * 1000 / runs
