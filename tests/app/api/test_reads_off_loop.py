"""Status, run, thread and event reads run off the API's event loop: while one of them is
stuck in the database, the loop still serves other requests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config.settings import Settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def stuck(monkeypatch: pytest.MonkeyPatch, target: Any, name: str
          ) -> tuple[threading.Event, threading.Event, list[str]]:
    """Make ``target.name`` wait for a release; record the thread it ran on."""
    entered, release, where = threading.Event(), threading.Event(), []
    original: Callable[..., Any] = getattr(target, name)

    def slow(*args: Any, **kwargs: Any) -> Any:
        where.append(threading.current_thread().name)
        entered.set()
        assert release.wait(30), "never released"
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, slow)
    return entered, release, where


@pytest.mark.parametrize("path", ["status", "thread", "events", "runs"])
def test_reads_off_loop_a_stuck_read_does_not_hold_the_loop(
        client: TestClient, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    thread_id = client.post("/threads", json={}).json()["thread_id"]
    store = client.app.state.api.services.store  # type: ignore[attr-defined]
    (row,) = [t for t in store.search_threads("default", limit=100) if t.id == thread_id]
    store.create_run("r-off-loop", row.key, "support", "task", tenant=row.tenant)
    url, method = {
        "status": (f"/threads/{thread_id}/runs/r-off-loop", "totals"),
        "thread": (f"/threads/{thread_id}", "get_thread"),
        "events": ("/v1/runs/r-off-loop/events?follow=false", "events"),
        "runs": (f"/threads/{thread_id}/runs", "thread_runs"),
    }[path]
    entered, release, where = stuck(monkeypatch, store, method)
    answers: list[int] = []
    reader = threading.Thread(target=lambda: answers.append(client.get(url).status_code))
    reader.start()
    try:
        assert entered.wait(30)
        # The read is stuck in the store; the loop still answers another request.
        assert client.get("/healthz").status_code == 200
        assert answers == []
    finally:
        release.set()
        reader.join(30)
    assert answers == [200]
    assert where and all(w.startswith("store-read") for w in where)
