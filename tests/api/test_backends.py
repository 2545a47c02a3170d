"""The run, approval and resume flows on both backends (SQLite, the machine's PostgreSQL),
and a server killed with SIGKILL mid-run that finishes the run after a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import SUPPORT_REFUND, Server, wait_status
from tools import sandbox


@pytest.fixture(params=["sqlite", "postgres"])
def backend_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
    else:
        yield {"FOREMAN_DATABASE_URL": request.getfixturevalue("pg_url")}


def _refunds(data_dir: Path, env: dict[str, str]) -> list[tuple[str, float]]:
    """The refunds in the demo sandbox: in Foreman's database when it has one."""
    conn = sandbox.connect(env.get("FOREMAN_DATABASE_URL") or data_dir / "sandbox.db")
    try:
        return [tuple(r) for r in conn.execute("SELECT order_id, amount_usd FROM refunds")]
    finally:
        conn.close()


def test_backend_run_approval_resume_flow(tmp_path: Path, backend_env: dict[str, str]) -> None:
    server = Server(tmp_path, {"FOREMAN_TEST_GATE": "refund", **backend_env}).start()
    try:
        with server.client() as c:
            thread = c.post("/threads", json={"metadata": {"backend": "x"}}).json()["thread_id"]
            paused = c.post(f"/threads/{thread}/runs/wait", json={
                "assistant_id": "support",
                "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}}).json()
            [pending] = paused["__interrupt__"]
            assert c.get(f"/threads/{thread}").json()["status"] == "interrupted"
            assert _refunds(tmp_path, backend_env) == []

            done = c.post(f"/threads/{thread}/runs/wait", json={
                "assistant_id": "support",
                "command": {"resume": {pending["id"]: {"type": "accept"}}}}).json()
            history = c.post(f"/threads/{thread}/history", json={"limit": 5}).json()
            metrics = c.get("/metrics").text
    finally:
        server.stop()

    assert "refunded" in done["final_answer"]
    assert _refunds(tmp_path, backend_env) == [("O-5002", 189.0)]
    assert len(history) == 5
    assert 'foreman_runs{status="success"} 1.0' in metrics
    assert 'foreman_tool_calls_total{tool="issue_refund"} 1.0' in metrics
    # Request latency by route template and status; the two waits were timed.
    assert ('foreman_http_request_duration_seconds_count{method="POST",'
            'route="/threads/{thread_id}/runs/wait",status="200"} 2.0') in metrics


def test_backend_sigkill_mid_run_then_restart_finishes_the_run(
        tmp_path: Path, backend_env: dict[str, str]) -> None:
    server = Server(tmp_path, {"FOREMAN_SCRIPTED_LATENCY_MS": "40", "FOREMAN_TEST_GATE": "open",
                               **backend_env}).start()
    try:
        with server.client() as c:
            thread = c.post("/threads", json={}).json()["thread_id"]
            run = c.post(f"/threads/{thread}/runs", json={
                "assistant_id": "support",
                "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}}).json()
            deadline = time.monotonic() + 30
            while "agent_finished" not in c.get(f"/v1/runs/{run['run_id']}/events",
                                                params={"follow": "false"}).text:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        server.kill()
        server.start()
        with server.client() as c:
            done = wait_status(c, thread, run["run_id"], {"success", "error"}, timeout=60)
            events = c.get(f"/v1/runs/{run['run_id']}/events", params={"follow": "false"}).text
    finally:
        server.stop()

    assert done["status"] == "success", done
    assert "event: run_resumed" in events
    assert _refunds(tmp_path, backend_env) == [("O-5002", 189.0)]  # exactly once across the crash


def test_backend_postgres_missing_server_fails_loudly(tmp_path: Path) -> None:
    server = Server(tmp_path, {"FOREMAN_DATABASE_URL":
                               "postgresql://postgres@127.0.0.1:1/none?connect_timeout=1"})
    with pytest.raises(RuntimeError, match="server exited"):
        server.start()
    assert server.proc is not None and server.proc.returncode != 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/healthz", timeout=1)
