"""What a new run must get past: a thread waiting for an approval takes no new input on any
path (409 naming the approval, nothing started) unless it is sent with
``multitask_strategy=enqueue`` (then it waits behind the approval), and ``budget_usd``
only lowers the configured run budget."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.conftest import SUPPORT_REFUND, SUPPORT_WHERE, Server, keyed_env, wait_status

FOLLOW_UP = {"assistant_id": "support",
             "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}}


@pytest.fixture(scope="module")
def admission_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Its own keyed server, refunds held for approval."""
    s = Server(tmp_path_factory.mktemp("admission"),
               {"FOREMAN_TEST_GATE": "refund", **keyed_env()}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def enqueue_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A keyed server of its own, so its refund order has not been refunded before."""
    s = Server(tmp_path_factory.mktemp("enqueue"),
               {"FOREMAN_TEST_GATE": "refund", **keyed_env()}).start()
    yield s
    s.stop()


def paused_thread(c: httpx.Client) -> tuple[str, str, str]:
    thread = c.post("/threads", json={}).json()["thread_id"]
    c.post(f"/threads/{thread}/runs/wait", json={
        "assistant_id": "support",
        "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}})
    (run,) = c.get(f"/threads/{thread}/runs").json()
    assert run["status"] == "interrupted"
    (waiting,) = [i for t in c.get(f"/threads/{thread}").json()["interrupts"].values()
                  for i in t]
    return thread, run["run_id"], waiting["value"]["approval_id"]


PATHS = [("runs", {}), ("runs/wait", {}), ("runs/stream", {}),
         ("runs", {"multitask_strategy": "reject"}),
         ("runs/wait", {"multitask_strategy": "interrupt"}),
         ("runs/stream", {"multitask_strategy": "interrupt"})]
ENQUEUE = {**FOLLOW_UP, "multitask_strategy": "enqueue"}


def test_run_admission_input_to_a_thread_awaiting_approval_is_409_on_every_path(
        admission_server: Server) -> None:
    with admission_server.client("alice") as alice, admission_server.client("bob") as bob:
        thread, run_id, approval_id = paused_thread(alice)
        refused = [alice.post(f"/threads/{thread}/{path}", json={**FOLLOW_UP, **extra})
                   for path, extra in PATHS]
        runs = alice.get(f"/threads/{thread}/runs").json()
        # The approval is not stale: it can still be decided and the run finishes.
        decided = bob.post(f"/v1/approvals/{approval_id}/decision",
                           json={"decision": "approve"})
        assert decided.status_code == 200, decided.text
        done = wait_status(bob, thread, run_id, {"success", "error"}, 300)

    for (path, extra), r in zip(PATHS, refused, strict=True):
        assert r.status_code == 409, (path, extra, r.text)
        assert approval_id in r.json()["detail"]
    assert [r["run_id"] for r in runs] == [run_id]
    assert done["status"] == "success", done


def first_event(c: httpx.Client, run_id: str, kind: str) -> dict[str, Any]:
    text = c.get(f"/v1/runs/{run_id}/events", params={"follow": "false"}).text
    found = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    return next(e for e in found if e["type"] == kind)


def test_run_admission_enqueue_waits_behind_the_pending_approval_on_every_path(
        enqueue_server: Server) -> None:
    with enqueue_server.client("alice") as alice, enqueue_server.client("bob") as bob, \
            ThreadPoolExecutor(2) as pool:
        thread, run_id, approval_id = paused_thread(alice)
        background = alice.post(f"/threads/{thread}/runs", json=ENQUEUE)
        waited = pool.submit(alice.post, f"/threads/{thread}/runs/wait", json=ENQUEUE)
        streamed = pool.submit(alice.post, f"/threads/{thread}/runs/stream", json=ENQUEUE)
        deadline = time.monotonic() + 60
        while len(alice.get(f"/threads/{thread}/runs").json()) < 4:
            assert time.monotonic() < deadline, "the enqueued runs were not all recorded"
            time.sleep(0.1)
        time.sleep(1.0)  # time enough for a queued run to start, were it not held
        held = alice.get(f"/threads/{thread}/runs").json()
        thread_view = alice.get(f"/threads/{thread}").json()
        refused = alice.post(f"/threads/{thread}/runs", json=FOLLOW_UP)
        decided = bob.post(f"/v1/approvals/{approval_id}/decision",
                           json={"decision": "approve"})
        wait_answer, stream_answer = waited.result(300), streamed.result(300)
        done = wait_status(bob, thread, run_id, {"success", "error"}, 300)
        queued = [wait_status(alice, thread, r["run_id"], {"success", "error"}, 300)
                  for r in held if r["run_id"] != run_id]
        resumed_end = first_event(alice, run_id, "run_completed")["ts"]
        starts = [first_event(alice, r["run_id"], "run_started")["ts"] for r in queued]

    assert background.status_code == 200, background.text
    assert {r["status"] for r in held if r["run_id"] != run_id} == {"pending"}
    assert [r["status"] for r in held if r["run_id"] == run_id] == ["interrupted"]
    assert thread_view["status"] == "interrupted"  # what the inbox and clients see
    assert refused.status_code == 409 and approval_id in refused.json()["detail"]
    assert decided.status_code == 200, decided.text
    assert done["status"] == "success", done
    assert wait_answer.status_code == 200, wait_answer.text
    assert "__error__" not in wait_answer.json()
    assert stream_answer.status_code == 200 and "event: end" in stream_answer.text
    assert len(queued) == 3 and {r["status"] for r in queued} == {"success"}
    # Each queued run started only after the approved run went on and finished.
    assert all(ts >= resumed_end for ts in starts)


def test_run_admission_chat_follow_up_to_a_thread_awaiting_approval_is_409(
        admission_server: Server) -> None:
    with admission_server.fresh_world().client("alice") as alice:
        thread, run_id, approval_id = paused_thread(alice)
        refused = alice.post("/v1/chat/completions", headers={"X-Foreman-Thread-Id": thread},
                             json={"model": "support",
                                   "messages": [{"role": "user", "content": SUPPORT_WHERE}]})
        runs = alice.get(f"/threads/{thread}/runs").json()

    assert refused.status_code == 409
    assert approval_id in refused.json()["error"]["message"]
    assert [r["run_id"] for r in runs] == [run_id]


def test_run_admission_budget_usd_may_lower_the_run_budget_never_raise_it(
        admission_server: Server) -> None:
    with admission_server.client("alice") as alice:
        thread = alice.post("/threads", json={}).json()["thread_id"]
        raised = alice.post(f"/threads/{thread}/runs", json={**FOLLOW_UP, "budget_usd": 10_000})
        runs = alice.get(f"/threads/{thread}/runs").json()
        lowered = alice.post(f"/threads/{thread}/runs/wait", json={**FOLLOW_UP,
                                                                   "budget_usd": 1.5})
        (run,) = alice.get(f"/threads/{thread}/runs").json()

    assert raised.status_code == 422 and raised.json()["field"] == "budget_usd"
    assert runs == []
    assert lowered.status_code == 200 and run["metadata"]["budget_usd"] == 1.5
