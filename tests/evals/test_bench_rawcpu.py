"""Figure 4's raw-LangGraph CPU baseline: the shape is read off the server's database, and
the baseline runs exactly that many delegations per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.storage.db import SqliteDatabase
from app.storage.store import Store
from evals.bench.rawcpu import baseline_cpu_ms, delegations_per_run


def test_delegations_per_run_is_the_median_count_of_agent_starts(tmp_path: Path) -> None:
    db = tmp_path / "foreman.db"
    store = Store(SqliteDatabase(db))
    store.create_thread("t-1", "default")
    for run, delegations in (("r-1", 2), ("r-2", 3), ("r-3", 3)):
        store.create_run(run, "t-1", "support", "task")
        for step in range(delegations):
            store.append_event(run, "agent_started", {"step_id": f"S{step + 1}"})
        store.append_event(run, "run_completed", {})
    store.close()
    assert delegations_per_run(db) == 3

    empty = tmp_path / "empty.db"
    Store(SqliteDatabase(empty)).close()
    with pytest.raises(RuntimeError, match="no delegations"):
        delegations_per_run(empty)


async def test_the_raw_baseline_runs_the_shape_and_reports_cpu_per_run(tmp_path: Path) -> None:
    ms = await baseline_cpu_ms(tmp_path, runs=4, rounds=3)
    assert ms > 0
    assert (tmp_path / "raw-checkpoints.db").stat().st_size > 0
