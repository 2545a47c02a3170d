"""Figure 4's raw-LangGraph CPU baseline: the shape is read off the server's database, and
the baseline runs exactly that many delegations per run, with a tool node when asked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.storage.db import SqliteDatabase
from app.storage.store import Store
from evals.bench.rawcpu import baseline_cpu_ms, delegations_per_run, tool_calls_per_run


def test_delegations_per_run_is_the_median_count_of_agent_starts(tmp_path: Path) -> None:
    db = tmp_path / "foreman.db"
    store = Store(SqliteDatabase(db))
    store.create_thread("t-1", "default")
    for run, delegations, calls in (("r-1", 2, 1), ("r-2", 3, 4), ("r-3", 3, 5), ("r-4", 0, 0)):
        store.create_run(run, "t-1", "support", "task")
        for step in range(delegations):
            store.append_event(run, "agent_started", {"step_id": f"S{step + 1}"})
        for n in range(calls):
            store.append_event(run, "tool_called", {"tool_call_id": f"c{n}"})
        store.append_event(run, "run_completed", {})
    store.close()
    assert delegations_per_run(db) == 3  # r-4 delegated nothing and is not counted
    assert tool_calls_per_run(db) == 4

    empty = tmp_path / "empty.db"
    Store(SqliteDatabase(empty)).close()
    with pytest.raises(RuntimeError, match="no delegations"):
        delegations_per_run(empty)


async def test_the_raw_baseline_runs_the_shape_and_reports_cpu_per_run(tmp_path: Path) -> None:
    ms = await baseline_cpu_ms(tmp_path, runs=4, rounds=3)
    assert ms > 0
    assert (tmp_path / "raw-checkpoints.db").stat().st_size > 0


def _subgraph_steps(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM checkpoints WHERE checkpoint_ns != ''")
                   .fetchone()[0])


async def test_the_tool_step_baseline_stores_a_tool_calls_supersteps(tmp_path: Path) -> None:
    one, tool = tmp_path / "one", tmp_path / "tool"
    assert await baseline_cpu_ms(one, runs=2, rounds=3) > 0
    assert await baseline_cpu_ms(tool, runs=2, rounds=3, tool_step=True) > 0
    plain = _subgraph_steps(one / "raw-checkpoints.db")
    with_tool = _subgraph_steps(tool / "raw-tool-checkpoints.db")
    # The same runs (the warm-up and two), each subgraph saving two more supersteps.
    assert plain > 0
    assert with_tool - plain == 3 * 3 * 2
