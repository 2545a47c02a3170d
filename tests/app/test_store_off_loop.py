"""A run's store steps leave the event loop free: ``Database.call`` runs them on the
database's threads, and a run's events are queued and stored in order off the loop
(``QueuedRunEvents``) — never behind the checkpoint of the step that emitted them."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.runs import crashpoints
from app.runs.claims import Claim, LeaseLost
from app.runs.events import QueuedRunEvents
from app.runs.fencing import FencedStore
from app.services import open_services
from app.storage.checkpoint_pg import FencedPostgresSaver
from app.storage.db import PostgresDatabase
from app.storage.store import Store
from tests.conftest import make_settings

TASK = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"
ASKED: contextvars.ContextVar[str] = contextvars.ContextVar("asked", default="")


def blocking(step: threading.Event, done: list[str], name: str) -> Callable[[], str]:
    def run() -> str:
        assert step.wait(10), "never released"
        done.append(name)
        return name

    return run


async def test_store_off_loop_a_step_runs_on_the_store_thread_with_the_callers_context(
        pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    ASKED.set("run r-1")
    where, seen = await db.call(lambda: (threading.current_thread().name, ASKED.get()))
    db.close()
    assert where.startswith("store") and where != threading.current_thread().name
    assert seen == "run r-1"


async def test_store_off_loop_cancelling_a_caller_waits_for_its_running_step_and_drops_a_queued_one(
        pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    db.threads = 1  # one store thread: the second step queues
    release, done = threading.Event(), []
    running = asyncio.create_task(db.call(blocking(release, done, "running")))
    queued = asyncio.create_task(db.call(blocking(release, done, "queued")))
    await asyncio.sleep(0.1)
    running.cancel()
    queued.cancel()
    await asyncio.sleep(0.2)
    assert not running.done()  # still waiting for the statement it started
    assert queued.done()  # never started: dropped at once
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await running
    db.close()
    assert done == ["running"]


async def test_store_off_loop_a_stuck_statement_does_not_stop_the_loop(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL, while one of a run's event writes is stuck in the database, the loop
    goes on (a ticker keeps ticking); released, the run finishes with every event in
    order."""
    settings = make_settings(tmp_path / "data", database_url=pg_url)
    release, stuck = threading.Event(), threading.Event()
    original = Store.append_events

    def slow(self: Store, run_id: str, batch: Any) -> list[int]:
        if any(type == "plan_created" for type, _, _ in batch) and not release.is_set():
            stuck.set()
            assert release.wait(20), "never released"
        return original(self, run_id, batch)

    monkeypatch.setattr(Store, "append_events", slow)
    async with open_services(settings) as s:
        running = asyncio.create_task(s.runner.start(TASK, "support"))
        assert await asyncio.to_thread(stuck.wait, 20)
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert not running.done()
        release.set()
        result = await running
        events = s.store.events(result.run_id, 0, limit=1000)
    assert ticks == 20
    assert result.status == "success"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_completed"
    assert types.index("plan_created") < types.index("ledger_updated")


async def test_store_off_loop_no_checkpoint_is_written_ahead_of_its_events(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL, where events are stored on the database's threads, every checkpoint
    write finds every event emitted before it already stored, even when event writes are
    slow."""
    emitted: dict[str, int] = {}
    append = Store.append_events

    def slow(self: Store, run_id: str, batch: Any) -> list[int]:
        time.sleep(0.02)
        return append(self, run_id, batch)

    monkeypatch.setattr(Store, "append_events", slow)
    at_checkpoint: list[tuple[int, int]] = []
    emit = QueuedRunEvents.emit

    def counting(self: QueuedRunEvents, type: str, data: Any) -> None:
        emit(self, type, data)
        emitted[self.run_id] = emitted.get(self.run_id, 0) + 1

    monkeypatch.setattr(QueuedRunEvents, "emit", counting)
    store_ref: list[Store] = []
    settings = make_settings(tmp_path / "data", database_url=pg_url)
    aput = FencedPostgresSaver.aput

    async def watched(self: Any, config: Any, *args: Any) -> Any:
        done = await aput(self, config, *args)  # the fence's flush ran before the write
        (run_id,) = emitted
        stored = len(store_ref[0].events(run_id, 0, limit=1000))
        at_checkpoint.append((emitted[run_id], stored))
        return done

    monkeypatch.setattr(FencedPostgresSaver, "aput", watched)
    async with open_services(settings) as s:
        store_ref.append(s.store)
        result = await s.runner.start(TASK, "support")
    assert result.status == "success"
    assert len(at_checkpoint) > 5
    assert all(stored >= sent for sent, stored in at_checkpoint), at_checkpoint


async def test_store_off_loop_a_lost_claim_refuses_the_queued_events(
        store: Store) -> None:
    store.create_run("r-1", "t-1", "support", "task")
    first = store.claim_run("r-1", "w1")
    assert isinstance(first, Claim)
    events = QueuedRunEvents(FencedStore(store, first), "r-1")
    events.emit("run_started", {"n": 1})
    await events.flush()
    assert isinstance(store.claim_run("r-1", "w2"), Claim)  # taken over: epoch 2
    events.emit("agent_started", {"n": 2})
    with pytest.raises(LeaseLost):
        await events.flush()
    with pytest.raises(LeaseLost):
        events.emit("agent_finished", {"n": 3})
    assert [e["type"] for e in store.events("r-1", 0)] == ["run_started"]


async def test_store_off_loop_an_event_is_stored_as_it_was_when_emitted(
        store: Store) -> None:
    store.create_run("r-1", "t-1", "support", "task")
    claim = store.claim_run("r-1", "w1")
    assert isinstance(claim, Claim)
    told: list[tuple[int, str, Any]] = []
    events = QueuedRunEvents(FencedStore(store, claim), "r-1",
                             [lambda seq, type, data: told.append((seq, type, data))])
    ledger = {"plan": ["one"]}
    events.emit("plan_created", {"ledger": ledger})
    ledger["plan"].append("two")  # changed after the emit, before the write
    await events.flush()
    (stored,) = store.events("r-1", 0)
    assert stored["data"]["ledger"] == {"plan": ["one"]}
    assert told == [(stored["seq"], "plan_created", {"ledger": {"plan": ["one"]}})]


async def test_store_off_loop_whoever_sees_a_run_ended_finds_its_closing_event(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ending's status and closing event commit together: at every status write, a run
    whose row says it ended already has ``run_completed`` stored as its last event (a
    waiter woken by the status used to read the events before the queue stored it)."""
    seen: list[tuple[str, str]] = []
    settings = make_settings(tmp_path / "data", database_url=pg_url)
    async with open_services(settings) as s:
        hit = crashpoints.hit

        def check(site: str) -> None:
            hit(site)
            if site == "run.status":
                (row,) = s.store.db.query("SELECT id, status FROM runs")
                events = s.store.events(row["id"], 0, limit=1000)
                seen.append((row["status"], events[-1]["type"]))

        monkeypatch.setattr(crashpoints, "hit", check)
        result = await s.runner.start(TASK, "support")
    assert result.status == "success"
    assert seen[-1] == ("success", "run_completed"), seen
    assert all(kind == "run_completed" for status, kind in seen if status == "success"), seen
