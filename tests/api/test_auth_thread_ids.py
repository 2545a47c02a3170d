"""Thread ids are per tenant: the same id in two tenants names two threads that run, pause,
hold state, history and approvals independently; another tenant's id answers exactly as
an unused one (no existence oracle, nothing to squat)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import SUPPORT_REFUND, SUPPORT_WHERE, Server, keyed_env, wait_status
from tools import sandbox

REFUND = {"assistant_id": "support",
          "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}}
WHERE = {"assistant_id": "support",
         "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}}


@pytest.fixture(scope="module")
def ids_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Its own keyed server (acme: alice, bob; globex: eve, gus), refunds held."""
    s = Server(tmp_path_factory.mktemp("thread-ids"),
               {"FOREMAN_TEST_GATE": "refund", **keyed_env()}).start()
    yield s
    s.stop()


def pending(c: httpx.Client, thread: str) -> list[dict[str, Any]]:
    return [i for t in c.get(f"/threads/{thread}").json()["interrupts"].values() for i in t]


def events(c: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """The run's stored events, read from its event stream."""
    r = c.get(f"/v1/runs/{run_id}/events", params={"follow": "false"})
    assert r.status_code == 200, r.text
    return [json.loads(line[len("data:"):]) for line in r.text.splitlines()
            if line.startswith("data:")]


def test_auth_thread_ids_same_id_in_two_tenants_are_two_threads(ids_server: Server) -> None:
    tid = f"shared-{uuid.uuid4().hex[:8]}"
    with ids_server.client("alice") as alice, ids_server.client("eve") as eve, \
            ids_server.client("bob") as bob:
        made_a = alice.post("/threads", json={"thread_id": tid, "metadata": {"who": "acme"}})
        made_e = eve.post("/threads", json={"thread_id": tid, "metadata": {"who": "globex"}})
        again = eve.post("/threads", json={"thread_id": tid})  # her own: a real conflict
        # The same task on the same id: same model call ids, same arguments.
        paused_a = alice.post(f"/threads/{tid}/runs/wait", json=REFUND)
        paused_e = eve.post(f"/threads/{tid}/runs/wait", json=REFUND)
        (run_a,), (run_e,) = (alice.get(f"/threads/{tid}/runs").json(),
                              eve.get(f"/threads/{tid}/runs").json())
        (wait_a,), (wait_e,) = pending(alice, tid), pending(eve, tid)
        approvals_a = [a["id"] for a in bob.get("/v1/approvals").json()]
        approvals_e = [a["id"] for a in eve.get("/v1/approvals").json()]
        foreign = eve.get(f"/v1/approvals/{wait_a['value']['approval_id']}")
        # acme's approval is decided; globex's thread keeps waiting for its own.
        decided = bob.post(f"/v1/approvals/{wait_a['value']['approval_id']}/decision",
                           json={"decision": "approve"})
        done_a = wait_status(alice, tid, run_a["run_id"], {"success", "error"}, 300)
        thread_a, thread_e = alice.get(f"/threads/{tid}").json(), eve.get(f"/threads/{tid}").json()
        state_e = eve.get(f"/threads/{tid}/state").json()
        history_a = alice.post(f"/threads/{tid}/history", json={"limit": 100}).json()
        history_e = eve.post(f"/threads/{tid}/history", json={"limit": 100}).json()
        events_e = events(eve, run_e["run_id"])
        cross_run = eve.get(f"/threads/{tid}/runs/{run_a['run_id']}")

    assert made_a.status_code == made_e.status_code == 200
    assert made_a.json()["thread_id"] == made_e.json()["thread_id"] == tid
    assert again.status_code == 409
    assert paused_a.status_code == paused_e.status_code == 200
    assert run_a["run_id"] != run_e["run_id"]
    assert run_a["thread_id"] == run_e["thread_id"] == tid
    assert run_e["status"] == "interrupted"
    # Two approvals, one per tenant, each seen only by its own tenant.
    assert wait_a["value"]["approval_id"] != wait_e["value"]["approval_id"]
    assert wait_a["value"]["approval_id"] in approvals_a
    assert wait_a["value"]["approval_id"] not in approvals_e
    assert wait_e["value"]["approval_id"] in approvals_e
    assert foreign.status_code == 404
    assert decided.status_code == 200, decided.text
    assert done_a["status"] == "success", done_a
    assert thread_a["metadata"] == {"who": "acme"} and thread_e["metadata"] == {"who": "globex"}
    assert thread_a["status"] == "idle" and thread_e["status"] == "interrupted"
    assert [i["value"]["approval_id"] for t in thread_e["interrupts"].values() for i in t] == [
        wait_e["value"]["approval_id"]]
    # globex's checkpoints are its own: one task, no answer from acme's finished run.
    contents = [m["content"] for m in state_e["values"]["messages"]]
    assert contents.count(SUPPORT_REFUND) == 1
    assert not state_e["values"].get("final_answer")
    assert state_e["checkpoint"]["thread_id"] == tid
    ids_a = {h["checkpoint"]["checkpoint_id"] for h in history_a}
    ids_e = {h["checkpoint"]["checkpoint_id"] for h in history_e}
    assert ids_a and ids_e and not ids_a & ids_e
    # Its tool calls ran for it (nothing replayed from acme's ledger rows).
    results = [e["data"] for e in events_e if e["type"] == "tool_result"]
    assert results and not any(r.get("replayed") for r in results)
    started = [e["data"] for e in events_e if e["type"] == "run_started"]
    assert [s["thread_id"] for s in started] == [tid]
    assert cross_run.status_code == 404


def probe(c: httpx.Client, tid: str) -> list[tuple[int, Any]]:
    """What a tenant sees of a thread id it never used, route by route."""
    out: list[tuple[int, Any]] = []
    for method, path, body in [("GET", "/threads/{t}", None), ("GET", "/threads/{t}/state", None),
                               ("POST", "/threads/{t}/history", {}),
                               ("GET", "/threads/{t}/runs", None),
                               ("POST", "/threads/{t}/runs", WHERE),
                               ("POST", "/threads/{t}/runs/wait", WHERE),
                               ("GET", "/threads/{t}/runs/r-000000000000", None)]:
        r = c.request(method, path.format(t=tid), json=body)
        detail = r.json().get("detail") if r.headers.get("content-type", "").startswith(
            "application/json") else r.text
        out.append((r.status_code, str(detail).replace(tid, "<id>")))
    return out


def test_auth_thread_ids_another_tenants_id_answers_as_an_unused_one(
        ids_server: Server) -> None:
    # An earlier test may have refunded the order in full: start from the seeded world, so
    # this refund pauses for its approval again.
    sandbox.reset(ids_server.data_dir / "sandbox.db")
    taken, unused = f"taken-{uuid.uuid4().hex[:8]}", f"unused-{uuid.uuid4().hex[:8]}"
    with ids_server.client("alice") as alice, ids_server.client("eve") as eve:
        assert alice.post("/threads", json={"thread_id": taken}).status_code == 200
        alice.post(f"/threads/{taken}/runs/wait", json=REFUND)
        seen_taken, seen_unused = probe(eve, taken), probe(eve, unused)
        # Creating it (any route that creates) works exactly as for a fresh id.
        created = [eve.post("/threads", json={"thread_id": t, "if_exists": "raise"})
                   for t in (taken, unused)]
        chat = eve.post("/v1/chat/completions", headers={"X-Foreman-Thread-Id": taken},
                        json={"model": "support",
                              "messages": [{"role": "user", "content": SUPPORT_WHERE}]})
        with_create = eve.post(f"/threads/{taken}-b/runs/wait",
                               json={**WHERE, "if_not_exists": "create"})
        alice_runs = alice.get(f"/threads/{taken}/runs").json()
        alice_thread = alice.get(f"/threads/{taken}").json()

    assert seen_taken == seen_unused
    assert {status for status, _ in seen_taken} == {404}
    assert [r.status_code for r in created] == [200, 200]
    assert created[0].json()["status"] == created[1].json()["status"] == "idle"
    assert created[0].json()["values"] == created[1].json()["values"]
    # eve's chat went to her new thread, not into acme's paused one.
    assert chat.status_code == 200, chat.text
    assert chat.headers["x-foreman-thread-id"] == taken
    assert chat.json()["foreman"]["thread_id"] == taken
    assert with_create.status_code == 200
    assert len(alice_runs) == 1 and alice_runs[0]["status"] == "interrupted"
    assert alice_thread["status"] == "interrupted"
