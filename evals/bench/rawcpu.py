"""Figure 4's CPU baseline: the raw-LangGraph graph of the same shape under the same load.

The load's runs are counted off the server's own database (how many delegations and tool
calls each made); then as many raw-LangGraph runs (``evals.bench.baseline``: plan, one
``Send`` per delegation into a subgraph, verify, final) of that many delegations run all at
once in this process, on a SQLite saver with the server's durability, and this process's CPU
is read. The subgraph has a tool call's supersteps when the runs made a tool call per
delegation, as a specialist's step then has; the one-node subgraph is the floor below that.
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


def _median_per_run(db: Path, event: str) -> int:
    """The median count of ``event`` events over the runs in ``db`` that delegated."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        counts = [int(n) for (n,) in conn.execute(
            "SELECT SUM(type = ?) FROM events GROUP BY run_id "
            "HAVING SUM(type = 'agent_started') > 0", (event,))]
    if not counts:
        raise RuntimeError(f"no delegations recorded in {db}")
    return round(statistics.median(counts))


def delegations_per_run(db: Path) -> int:
    """The median number of delegations (``agent_started`` events) of the runs in ``db``."""
    return _median_per_run(db, "agent_started")


def tool_calls_per_run(db: Path) -> int:
    """The median number of tool calls (``tool_called`` events) of the runs that delegated."""
    return _median_per_run(db, "tool_called")


async def baseline_cpu_ms(workdir: Path, runs: int, rounds: int,
                          synchronous: str = "normal", *, tool_step: bool = False) -> float:
    """CPU milliseconds per run of ``runs`` raw-LangGraph runs of ``rounds`` delegations,
    all at once, durable on a SQLite saver (LangGraph's default serializer); with
    ``tool_step`` each delegation's subgraph has a tool call's three supersteps."""
    name = "raw-tool-checkpoints.db" if tool_step else "raw-checkpoints.db"
    async with sqlite_saver(workdir / name, synchronous, compress=False) as saver:
        graph = build_baseline(saver, tool_step=tool_step)

        async def one() -> None:
            config: Any = {"configurable": {"thread_id": f"raw-{uuid.uuid4().hex[:12]}"},
                      "recursion_limit": rounds * 4 + 20}
            out = await graph.ainvoke({"task": "raw", "rounds": rounds}, config,
                                      durability="sync")
            if len(out["results"]) != rounds:
                raise RuntimeError("raw-LangGraph run did the wrong number of delegations")
            if tool_step and not all("(record " in r["summary"] for r in out["results"]):
                raise RuntimeError("raw-LangGraph step did not pass through its tool node")

        await one()  # warm-up: the first connection, the graph's first compile paths
        started = time.process_time()
        await asyncio.gather(*(one() for _ in range(runs)))
        return (time.process_time() - started) * 1000 / runs
