"""Status, run, thread and event reads run off the API's event loop: while one of them is
stuck in the database, the loop still serves other requests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config.ops_config import QueueConfig
from app.config.settings import Settings
from tests.conftest import make_settings


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


def while_stuck(client: TestClient, entered: threading.Event, release: threading.Event,
                request: Callable[[], int]) -> int:
    """Send ``request`` from a thread; while it is stuck in the store, the loop must still
    answer /healthz; then release it. The request's status code."""
    answers: list[int] = []
    sender = threading.Thread(target=lambda: answers.append(request()))
    sender.start()
    try:
        assert entered.wait(30)
        assert client.get("/healthz").status_code == 200
        assert answers == []
    finally:
        release.set()
        sender.join(30)
    assert len(answers) == 1
    return answers[0]


@pytest.mark.parametrize("path", ["status", "thread", "events", "runs"])
def test_reads_off_loop_a_stuck_read_does_not_hold_the_loop(
        client: TestClient, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    thread_id = client.post("/threads", json={}).json()["thread_id"]
    store = client.app.state.api.services.store  # type: ignore[attr-defined]
    (row,) = [t for t in store.search_threads("default", limit=100) if t.id == thread_id]
    store.create_run("r-off-loop", row.key, "support", "task", tenant=row.tenant)
    url, method = {
        "status": (f"/threads/{thread_id}/runs/r-off-loop", "thread_run"),
        "thread": (f"/threads/{thread_id}", "get_thread"),
        "events": ("/v1/runs/r-off-loop/events?follow=false", "events"),
        "runs": (f"/threads/{thread_id}/runs", "thread_runs"),
    }[path]
    entered, release, where = stuck(monkeypatch, store, method)
    assert while_stuck(client, entered, release, lambda: client.get(url).status_code) == 200
    assert where and all(w.startswith("store-read") for w in where)


def test_distributed_start_off_loop_a_stuck_insert_does_not_hold_the_loop(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An API replica that executes no runs starts one without blocking its loop: while the
    run's insert is stuck in the database, other requests are answered."""
    settings = make_settings(tmp_path / "data", database_url=pg_url,
                             queue=QueueConfig(api_executes=False))
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        thread_id = client.post("/threads", json={}).json()["thread_id"]
        store = client.app.state.api.services.store  # type: ignore[attr-defined]
        entered, release, _ = stuck(monkeypatch, store, "create_run")
        body = {"assistant_id": "support", "input": {"messages": [
            {"role": "user", "content": "Customer C-1002 asks where order O-5003 is"}]}}
        assert while_stuck(client, entered, release, lambda: client.post(
            f"/threads/{thread_id}/runs", json=body).status_code) == 200
        assert store.run_job_id(store.latest_run(store.key_of("default", thread_id)).id)
