"""LangGraph checkpoint writes are fenced by the run's claim on both backends: once a second
claimant takes the run over, the first one's checkpoints and pending writes are refused."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint

from app.runs.claims import FENCE_LOCK, Claim, LeaseLost
from app.runs.fencing import FencedStore
from app.services import open_services
from app.storage.checkpoint import postgres_saver, sqlite_saver
from app.storage.checkpoint_fence import CheckpointFence, fenced_checkpoints
from app.storage.db import PostgresDatabase, SqliteDatabase
from app.storage.store import Store
from tests.conftest import make_settings

TASK = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"


@dataclass
class Backend:
    store: Store
    saver: BaseCheckpointSaver[Any]
    url: str | None


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            store, url = Store(SqliteDatabase(tmp_path / "app.storage.db")), None
            saver: BaseCheckpointSaver[Any] = await stack.enter_async_context(
                sqlite_saver(tmp_path / "checkpoints.db"))
        else:
            url = request.getfixturevalue("pg_url")
            store = Store(PostgresDatabase(url))
            saver = await stack.enter_async_context(postgres_saver(url))
        store.create_thread("t-1", "acme")
        store.create_run("r-1", "t-1", "support", "task", tenant="acme")
        try:
            yield Backend(store, saver, url)
        finally:
            store.close()


def claim(store: Store, owner: str) -> FencedStore:
    got = store.claim_run("r-1", owner)
    assert isinstance(got, Claim)
    return FencedStore(store, got)


async def put(saver: BaseCheckpointSaver[Any], fence: CheckpointFence, step: int) -> str:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"step": step, "notes": [f"note {step}"]}
    config: Any = {"configurable": {"thread_id": "t-1", "checkpoint_ns": ""}}
    with fenced_checkpoints(fence):
        done = await saver.aput(config, checkpoint, {"source": "loop", "step": step},
                                {"step": 1, "notes": 1})
        await saver.aput_writes(done, [("notes", f"write {step}")], task_id=f"task-{step}")
    return str(done["configurable"]["checkpoint_id"])


async def stored(saver: BaseCheckpointSaver[Any]) -> list[int]:
    config: Any = {"configurable": {"thread_id": "t-1"}}
    return sorted([int(t.metadata["step"]) async for t in saver.alist(config)])


async def test_claims_checkpoint_writes_of_a_lost_claim_are_refused(backend: Backend) -> None:
    first = claim(backend.store, "w1")
    await put(backend.saver, first.checkpoint_fence(), 1)
    second = claim(backend.store, "w2")  # takes the run over: epoch 2

    checkpoint = empty_checkpoint()
    config: Any = {"configurable": {"thread_id": "t-1", "checkpoint_ns": ""}}
    with pytest.raises(LeaseLost), fenced_checkpoints(first.checkpoint_fence()):
        await backend.saver.aput(config, checkpoint, {"source": "loop", "step": 2}, {})
    with pytest.raises(LeaseLost), fenced_checkpoints(first.checkpoint_fence()):
        await backend.saver.aput_writes(
            {"configurable": {"thread_id": "t-1", "checkpoint_ns": "",
                              "checkpoint_id": checkpoint["id"]}},
            [("notes", "stale")], task_id="stale")
    assert await stored(backend.saver) == [1]  # the stale owner wrote nothing

    await put(backend.saver, second.checkpoint_fence(), 3)
    assert await stored(backend.saver) == [1, 3]
    latest = await backend.saver.aget_tuple({"configurable": {"thread_id": "t-1"}})
    assert latest is not None and latest.metadata["step"] == 3
    assert all(w[2] != "stale" for w in latest.pending_writes or [])


async def test_claims_checkpoint_takeover_waits_for_an_inflight_checkpoint_write(
        pg_url: str) -> None:
    store = Store(PostgresDatabase(pg_url))
    try:
        store.create_thread("t-1", "acme")
        store.create_run("r-1", "t-1", "support", "task", tenant="acme")
        first = claim(store, "w1")
        # A checkpoint write of the first claim in flight: the saver's transaction holds the
        # run's fence lock in shared mode until it commits.
        writer = psycopg.connect(pg_url)
        writer.execute("SELECT pg_advisory_xact_lock_shared(%s, hashtext(%s))",
                       (FENCE_LOCK, "r-1"))
        taken: list[Claim | str] = []
        thief = threading.Thread(target=lambda: taken.append(store.claim_run("r-1", "w2")))
        thief.start()
        thief.join(0.5)
        assert thief.is_alive() and taken == []  # the takeover waits for that commit
        run = store.get_run("r-1")
        assert run is not None and run.epoch == first.epoch
        writer.commit()
        writer.close()
        thief.join(10)
        assert isinstance(taken[0], Claim) and taken[0].epoch == first.epoch + 1
    finally:
        store.close()


async def test_claims_checkpoint_fence_reaches_the_graph_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Driven through the runner: the fence reaches LangGraph's checkpoint tasks, and a
    takeover in the middle of the run stops its checkpoints there."""
    checks: list[int] = []
    at_steal: list[int] = []
    original = FencedStore.checkpoint_fence

    def stolen_at_third(self: FencedStore, flush: Any = None) -> CheckpointFence:
        fence = original(self, flush)

        async def check() -> None:
            checks.append(1)
            if len(checks) == 3:
                with sqlite3.connect(tmp_path / "data" / "checkpoints.db") as db:
                    (n,) = db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()
                at_steal.append(int(n))
                self.base.claim_run(fence.run_id, "thief")
            await fence.check()

        return CheckpointFence(fence.run_id, fence.epoch, check, flush)

    monkeypatch.setattr(FencedStore, "checkpoint_fence", stolen_at_third)
    settings = make_settings(tmp_path / "data")
    async with open_services(settings) as s:
        run = s.runner.create(TASK, "support", tenant="acme", created_by="alice")
        with pytest.raises(LeaseLost):
            await s.runner.execute(run.id)
        config: Any = {"configurable": {"thread_id": run.thread_id}}
        written = [t async for t in s.runner.saver.alist(config)]
        after = s.store.get_run(run.id)
    assert len(checks) == 3  # the refused write ended the run: nothing was tried after it
    assert at_steal[0] >= 1 and len(written) == at_steal[0]  # the refused one never landed
    assert after is not None and after.owner == "thief" and after.epoch == 2

