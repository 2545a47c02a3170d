"""Writes and the remaining reads run off the API's event loop: while a thread's creation, a
kill-switch change, a run's or a chat completion's start, or an approval decision (embedded
and distributed) is stuck in the database, the loop still serves other requests, and the
request then succeeds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config.ops_config import QueueConfig
from app.config.settings import Settings
from tests.app.api.test_reads_off_loop import stuck, while_stuck
from tests.conftest import make_settings

REFUND = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
WHERE = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"
RUN = {"assistant_id": "support", "input": {"messages": [{"role": "user", "content": WHERE}]}}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def store_of(client: TestClient) -> Any:
    return client.app.state.api.services.store  # type: ignore[attr-defined]


def test_writes_off_loop_thread_create(client: TestClient,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release, _ = stuck(monkeypatch, store_of(client), "create_thread")
    assert while_stuck(client, entered, release, lambda: client.post(
        "/threads", json={"thread_id": "t-off-loop"}).status_code) == 200
    assert client.get("/threads/t-off-loop").status_code == 200


@pytest.mark.parametrize("path", ["/v1/admin/killswitch", "/v1/platform/killswitch"])
def test_writes_off_loop_kill_switch_change(client: TestClient,
                                            monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    entered, release, _ = stuck(monkeypatch, store_of(client), "put_switch")
    assert while_stuck(client, entered, release, lambda: client.put(
        path, json={"max_concurrent_runs": 3}).status_code) == 200
    assert client.get(path).json()["max_concurrent_runs"] == 3


def test_writes_off_loop_embedded_run_start(client: TestClient,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    thread_id = client.post("/threads", json={}).json()["thread_id"]
    entered, release, _ = stuck(monkeypatch, store_of(client), "create_run")
    answers: list[dict[str, Any]] = []

    def start() -> int:
        reply = client.post(f"/threads/{thread_id}/runs", json=RUN)
        answers.append(reply.json())
        return reply.status_code

    assert while_stuck(client, entered, release, start) == 200
    run_id = answers[0]["run_id"]
    done = client.get(f"/threads/{thread_id}/runs/{run_id}/join").json()
    assert "__error__" not in done
    assert client.get(f"/threads/{thread_id}/runs/{run_id}").json()["status"] == "success"


def test_writes_off_loop_chat_completion_start(client: TestClient,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release, _ = stuck(monkeypatch, store_of(client), "create_run")
    answers: list[dict[str, Any]] = []

    def chat() -> int:
        reply = client.post("/v1/chat/completions", json={
            "model": "support", "messages": [{"role": "user", "content": WHERE}]})
        answers.append(reply.json())
        return reply.status_code

    assert while_stuck(client, entered, release, chat) == 200
    assert answers[0]["foreman"]["status"] == "success"
    assert answers[0]["choices"][0]["message"]["content"]


@pytest.mark.parametrize("path", ["approvals", "audit", "verify", "metrics", "killswitch",
                                  "search", "state", "console"])
def test_writes_off_loop_other_reads_do_not_hold_the_loop(
        client: TestClient, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    thread_id = client.post("/threads", json={}).json()["thread_id"]
    run_id = client.post(f"/threads/{thread_id}/runs", json=RUN).json()["run_id"]
    client.get(f"/threads/{thread_id}/runs/{run_id}/join")
    method, url, name = {
        "approvals": ("get", "/v1/approvals", "list_approvals"),
        "audit": ("get", f"/v1/audit?run_id={run_id}", "audit_entries"),
        "verify": ("get", "/v1/audit/verify", "verify_audit"),
        "metrics": ("get", "/metrics", "run_counts"),
        "killswitch": ("get", "/v1/admin/killswitch", "get_switch"),
        "search": ("post", "/threads/search", "search_threads"),
        "state": ("get", f"/threads/{thread_id}/state", "thread_runs"),
        "console": ("get", f"/v1/runs/{run_id}", "get_run"),
    }[path]
    entered, release, where = stuck(monkeypatch, store_of(client), name)
    send = (lambda: client.post(url, json={}).status_code) if method == "post" else (
        lambda: client.get(url).status_code)
    assert while_stuck(client, entered, release, send) == 200
    assert where and all(w.startswith("store-read") for w in where)


def paused_approval(client: TestClient) -> tuple[str, str, str]:
    """Start the demo refund, which the bundled policy pauses: (thread, run, approval)."""
    thread_id = client.post("/threads", json={}).json()["thread_id"]
    client.post(f"/threads/{thread_id}/runs/wait", json={
        "assistant_id": "support", "input": {"messages": [{"role": "user", "content": REFUND}]}})
    (run,) = client.get(f"/threads/{thread_id}/runs").json()
    assert run["status"] == "interrupted"
    (approval,) = client.get("/v1/approvals", params={"status": "pending"}).json()
    return thread_id, run["run_id"], approval["id"]


def loop_thread(client: TestClient) -> int:
    """The id of the thread the app's event loop runs on."""
    return int(client.portal.call(lambda: threading.get_ident()))  # type: ignore[union-attr]


def spy(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[int]:
    """Record the threads ``target.name`` runs on."""
    seen: list[int] = []
    original = getattr(target, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, recorded)
    return seen


# On SQLite one connection serves the process: the decision is held up at its admission
# check (the first statement of its off-loop step), not inside the transaction, whose
# connection lock would hold up every other statement as well.
@pytest.mark.parametrize("via", ["decision", "command"])
def test_writes_off_loop_embedded_approval_decision(
        policy_settings: Settings, monkeypatch: pytest.MonkeyPatch, via: str) -> None:
    """A decision (``/v1/approvals/{id}/decision`` or ``command.resume``) checks and settles
    off the loop; the run then resumes here."""
    with TestClient(create_app(policy_settings), base_url="http://127.0.0.1") as client:
        thread_id, run_id, approval_id = paused_approval(client)
        store = store_of(client)
        settled = spy(monkeypatch, store, "settle_approval_in")
        entered, release, _ = stuck(monkeypatch, store, "active_runs")
        url, body = {
            "decision": (f"/v1/approvals/{approval_id}/decision", {"decision": "approve"}),
            "command": (f"/threads/{thread_id}/runs", {
                "assistant_id": "support", "command": {"resume": {"decision": "approve"}}}),
        }[via]
        assert while_stuck(client, entered, release,
                           lambda: client.post(url, json=body).status_code) == 200
        client.get(f"/threads/{thread_id}/runs/{run_id}/join")
        run = client.get(f"/threads/{thread_id}/runs/{run_id}").json()
        approval = client.get(f"/v1/approvals/{approval_id}").json()
        loop = loop_thread(client)
    assert approval["status"] == "decided" and approval["decision"] == "approve"
    assert run["status"] == "success"
    assert settled and loop not in settled


def test_writes_off_loop_distributed_approval_decision(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An API replica that executes no runs decides in one transaction off its loop: the
    decision and the resume job it defers commit together while other requests go on."""
    settings = make_settings(tmp_path / "data", with_policy=True, database_url=pg_url,
                             queue=QueueConfig(api_executes=False))
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        services = client.app.state.api.services  # type: ignore[attr-defined]
        paused = client.portal.call(  # type: ignore[union-attr]
            lambda: services.runner.start(REFUND, "support", tenant="default",
                                          created_by="alice"))
        assert paused.status == "interrupted"
        (approval,) = client.get("/v1/approvals", params={"status": "pending"}).json()
        store = store_of(client)
        entered, release, _ = stuck(monkeypatch, store, "settle_approval_in")
        assert while_stuck(client, entered, release, lambda: client.post(
            f"/v1/approvals/{approval['id']}/decision",
            json={"decision": "approve"}).status_code) == 200
        decided = store.get_approval(approval["id"])
        run = store.get_run(paused.run_id)
        job = store.run_job_id(paused.run_id)
    assert decided.status == "decided" and decided.decided_by == "local"
    assert run.status == "pending" and job is not None
