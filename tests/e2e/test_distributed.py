"""Distributed mode with real processes on loopback: two API replicas and three workers on
one PostgreSQL schema (offline models, the sandbox's tables in that schema).

One cluster serves the module's tests in order; tests that kill or pause workers start
replacements. Waits are bounded and generous (the machine is small and shared); the
figures they produce (cancel latency) are printed, not asserted.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import SUPPORT_REFUND, SUPPORT_WHERE
from tests.e2e.cluster import Cluster, Node
from tools import sandbox

pytestmark = pytest.mark.cluster

FAST_RUN_S = 120  # bound on any one run's wait on this loaded machine


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from tests.conftest import PG_URL

    schema = f"t_{time.time_ns() % 10**10}"
    conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    c = Cluster(tmp_path_factory.mktemp("cluster"), url,
                {"FOREMAN_TEST_GATE": "hold-threads", "FOREMAN_SCRIPTED_LATENCY_MS": "40",
                 "FOREMAN_TEST_SLOW_REFUND_S": "8"})
    try:
        c.start(apis=2, workers=3)
        yield c
    finally:
        c.stop()
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def db(c: Cluster) -> psycopg.Connection[Any]:
    from psycopg.rows import dict_row

    return psycopg.connect(c.pg_url, autocommit=True, row_factory=dict_row)  # type: ignore[return-value]


def body(task: str, **extra: Any) -> dict[str, Any]:
    return {"assistant_id": "support", "input": {"messages": [{"role": "user", "content": task}]},
            **extra}


def new_thread(client: httpx.Client, thread_id: str | None = None) -> str:
    payload = {"thread_id": thread_id} if thread_id else {}
    return str(client.post("/threads", json=payload).json()["thread_id"])


def wait_run(client: httpx.Client, thread_id: str, run_id: str, statuses: set[str],
             timeout: float = FAST_RUN_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/threads/{thread_id}/runs/{run_id}").json()
        if run["status"] in statuses:
            return dict(run)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never reached {statuses}")


def refund_marker(c: Cluster, timeout: float = FAST_RUN_S) -> tuple[Node, str]:
    """The worker inside the slow refund, and the call's idempotency key."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in c.workers:
            for marker in w.data_dir.glob("refund-*"):
                key = marker.read_text()
                marker.unlink()
                return w, key
        time.sleep(0.05)
    raise AssertionError("no worker reached the refund")


def refunds(c: Cluster, order: str) -> list[Any]:
    conn = sandbox.connect(c.sandbox)
    try:
        return conn.execute("SELECT * FROM refunds WHERE order_id = ?", (order,)).fetchall()
    finally:
        conn.close()


def stream(node: Node, path: str, into: list[tuple[str, str]]) -> threading.Thread:
    """Collect an SSE stream's (event, data) pairs in the background until it ends."""

    def read() -> None:
        with node.client() as client, client.stream("GET", path, timeout=FAST_RUN_S) as r:
            event = ""
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    into.append((event, line.split(":", 1)[1].strip()))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_cluster_runs_spread_over_workers_and_interactive_overtakes_the_backlog(
        cluster: Cluster) -> None:
    a, b = (n.client() for n in cluster.apis)
    batch = []
    for i in range(30):
        api = (a, b)[i % 2]
        thread = new_thread(api)
        run = api.post(f"/threads/{thread}/runs", json=body(SUPPORT_WHERE)).json()
        batch.append((thread, run["run_id"]))
    urgent_thread = new_thread(b)
    urgent = b.post(f"/threads/{urgent_thread}/runs/wait", json=body(SUPPORT_WHERE),
                    timeout=FAST_RUN_S)
    assert urgent.status_code == 200
    for i, (thread, run_id) in enumerate(batch):
        done = wait_run((b, a)[i % 2], thread, run_id, {"success", "error", "interrupted"})
        assert done["status"] == "success", done

    with db(cluster) as conn:
        owners = {r["owner"] for r in conn.execute(
            "SELECT owner FROM runs WHERE id = ANY(%s)", ([r for _, r in batch],))}
        paid = conn.execute(
            "SELECT run_id, data::json->>'call_key' AS k, COUNT(*) AS n FROM events"
            " WHERE type = 'model_call' AND data::json->>'outcome' = 'ok'"
            " GROUP BY run_id, data::json->>'call_key' HAVING COUNT(*) > 1").fetchall()
        started = {r["run_id"]: r["ts"] for r in conn.execute(
            "SELECT run_id, ts FROM events WHERE type = 'run_started'")}
    assert len(owners) == 3, owners  # every worker executed some of the runs
    assert paid == []  # no model call was paid twice
    urgent_run = urgent.headers["Content-Location"].rsplit("/", 1)[-1]
    later = [r for _, r in batch if started[r] > started[urgent_run]]
    print(f"\ninteractive run started ahead of {len(later)} of 30 queued background runs")
    assert later, "the interactive run waited behind the whole background backlog"


def test_cluster_sigkill_mid_tool_call_is_taken_over_with_one_refund(cluster: Cluster) -> None:
    a, b = cluster.apis
    sandbox.reset(cluster.sandbox)
    with a.client() as client:
        thread = new_thread(client)
        run = client.post(f"/threads/{thread}/runs", json=body(SUPPORT_REFUND)).json()
    parts: list[tuple[str, str]] = []
    reader = stream(b, f"/threads/{thread}/runs/{run['run_id']}/stream", parts)
    victim, key = refund_marker(cluster)
    victim.signal(signal.SIGKILL)
    cluster.workers.remove(victim)
    with b.client() as client:
        done = wait_run(client, thread, run["run_id"], {"success", "error"})
    reader.join(FAST_RUN_S)
    assert done["status"] == "success", done
    assert len(refunds(cluster, "O-5002")) == 1  # the write landed once, adopted on takeover
    assert parts and parts[-1][0] == "end"
    with db(cluster) as conn:
        row = conn.execute("SELECT status, result FROM tool_calls WHERE key = %s",
                           (key,)).fetchone()
        epoch = conn.execute("SELECT epoch FROM runs WHERE id = %s",
                             (run["run_id"],)).fetchone()
    assert row["status"] == "DONE" and '"reconciled": true' in row["result"]
    assert epoch["epoch"] >= 2
    cluster.add_worker()


def test_cluster_paused_worker_cannot_write_after_takeover(cluster: Cluster) -> None:
    a, _ = cluster.apis
    sandbox.reset(cluster.sandbox)
    with a.client() as client:
        thread = new_thread(client)
        run = client.post(f"/threads/{thread}/runs", json=body(SUPPORT_REFUND)).json()
        sleeper, key = refund_marker(cluster)
        sleeper.signal(signal.SIGSTOP)
        done = wait_run(client, thread, run["run_id"], {"success", "error"})
    assert done["status"] == "success", done
    with db(cluster) as conn:
        epoch = conn.execute("SELECT epoch FROM runs WHERE id = %s",
                             (run["run_id"],)).fetchone()["epoch"]
        before = conn.execute("SELECT COUNT(*) AS n FROM events WHERE run_id = %s",
                              (run["run_id"],)).fetchone()["n"]
        saved = _checkpoint_rows(conn, thread)
    sleeper.signal(signal.SIGCONT)  # it wakes inside the refund, holding the old claim
    deadline = time.monotonic() + 60
    while "taken over" not in sleeper.log() and "claim was lost" not in sleeper.log():
        assert time.monotonic() < deadline, sleeper.log()[-2000:]
        time.sleep(0.2)
    with db(cluster) as conn:
        epochs = [r["epoch"] for r in conn.execute(
            "SELECT epoch FROM events WHERE run_id = %s ORDER BY seq", (run["run_id"],))]
        after = len(epochs)
        ledger = conn.execute("SELECT result FROM tool_calls WHERE key = %s",
                              (key,)).fetchone()
        final = conn.execute("SELECT status, epoch FROM runs WHERE id = %s",
                             (run["run_id"],)).fetchone()
        saved_after = _checkpoint_rows(conn, thread)
    assert after == before  # the woken worker added no event
    assert saved_after == saved  # nor a checkpoint or a step's pending writes
    assert epochs == sorted(epochs)  # no write of an old epoch after a newer one
    assert '"reconciled": true' in ledger["result"]  # its own result never replaced it
    assert final["status"] == "success" and final["epoch"] == epoch
    assert len(refunds(cluster, "O-5002")) == 1


def _checkpoint_rows(conn: Any, thread_id: str) -> tuple[int, int]:
    rows = [conn.execute(f"SELECT COUNT(*) AS n FROM {table} WHERE thread_id = %s",
                         (thread_id,)).fetchone()["n"]
            for table in ("checkpoints", "checkpoint_writes")]
    return rows[0], rows[1]


def test_cluster_cancel_on_the_other_replica_stops_the_run(cluster: Cluster) -> None:
    a, b = cluster.apis
    with a.client() as ca, b.client() as cb:
        thread = new_thread(ca)
        run = ca.post(f"/threads/{thread}/runs", json=body(SUPPORT_WHERE)).json()
        wait_run(ca, thread, run["run_id"], {"running"})
        time.sleep(0.3)  # inside the run's model calls
        asked = time.monotonic()
        assert cb.post(f"/threads/{thread}/runs/{run['run_id']}/cancel").status_code == 200
        done = wait_run(ca, thread, run["run_id"], {"interrupted", "success"}, timeout=30)
        took = time.monotonic() - asked
        print(f"\ncancel on replica B reached the run's worker in {took * 1000:.0f} ms")
        assert done["status"] == "interrupted"
        events = ca.get(f"/v1/runs/{run['run_id']}/events", params={"follow": "false"})
    types = [line.split(":", 1)[1].strip() for line in events.text.splitlines()
             if line.startswith("event:")]
    assert types[-1] == "run_cancelled"


def test_cluster_approval_resumes_after_every_worker_restarted(cluster: Cluster) -> None:
    a, b = cluster.apis
    sandbox.reset(cluster.sandbox)
    with a.client() as ca:
        thread = new_thread(ca, "hold-approve-1")
        paused = ca.post(f"/threads/{thread}/runs/wait", json=body(SUPPORT_REFUND),
                         timeout=FAST_RUN_S)
        assert paused.status_code == 200
        run_id = paused.headers["Content-Location"].rsplit("/", 1)[-1]
        assert ca.get(f"/threads/{thread}/runs/{run_id}").json()["status"] == "interrupted"
    for w in list(cluster.workers):
        w.stop()
        cluster.workers.remove(w)
    cluster.add_worker()
    with b.client() as cb:
        pending = cb.get("/v1/approvals", params={"status": "pending"}).json()
        mine = [p for p in pending if p["thread_id"] == thread]
        assert len(mine) == 1
        decided = cb.post(f"/v1/approvals/{mine[0]['id']}/decision",
                          json={"decision": "approve"})
        assert decided.status_code == 200, decided.text
        done = wait_run(cb, thread, run_id, {"success", "error"})
    assert done["status"] == "success", done
    assert len(refunds(cluster, "O-5002")) == 1
