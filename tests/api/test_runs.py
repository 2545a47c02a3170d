"""Run manager over HTTP: one active run per thread (409 or enqueue), cancel, kill switch,
and SSE replay with Last-Event-ID resume."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.api.conftest import SUPPORT_WHERE, Server, wait_status

BODY = {"assistant_id": "incident",
        "input": {"messages": [{"role": "user", "content": "checkout-api is returning 500 "
                                                            "errors; investigate and fix it"}]}}


def _thread(c: httpx.Client) -> str:
    return str(c.post("/threads", json={}).json()["thread_id"])


def _sse(text: str) -> list[dict[str, Any]]:
    out, cur = [], {}
    for line in text.splitlines():
        if not line:
            if cur:
                out.append(cur)
            cur = {}
        elif not line.startswith(":"):
            k, _, v = line.partition(": ")
            cur[k] = v
    return out + ([cur] if cur else [])


def test_runs_second_run_on_busy_thread_is_409_or_enqueued(slow_server: Server) -> None:
    with slow_server.client() as c:
        thread = _thread(c)
        first = c.post(f"/threads/{thread}/runs", json=BODY).json()
        busy = c.post(f"/threads/{thread}/runs", json=BODY)
        queued = c.post(f"/threads/{thread}/runs",
                        json={**BODY, "multitask_strategy": "enqueue"}).json()
        state = c.get(f"/threads/{thread}").json()["status"]
        done = c.get(f"/threads/{thread}/runs/{queued['run_id']}/join").json()
        runs = c.get(f"/threads/{thread}/runs/{first['run_id']}").json()

    assert busy.status_code == 409 and "active run" in busy.json()["detail"]
    assert state == "busy"
    assert "restarted" in done["final_answer"]
    assert runs["status"] == "success"


def test_runs_cancel_stops_the_run_and_frees_the_thread(slow_server: Server) -> None:
    with slow_server.client() as c:
        thread = _thread(c)
        run = c.post(f"/threads/{thread}/runs", json=BODY).json()
        wait_status(c, thread, run["run_id"], {"running"})
        cancelled = c.post(f"/threads/{thread}/runs/{run['run_id']}/cancel",
                           params={"wait": 1}).json()
        events = _sse(c.get(f"/v1/runs/{run['run_id']}/events").text)
        again = c.post(f"/threads/{thread}/runs/{run['run_id']}/cancel")
        thread_after = c.get(f"/threads/{thread}").json()
        follow_up = c.post(f"/threads/{thread}/runs/wait", json=BODY)

    assert cancelled["status"] == "interrupted"
    assert cancelled["foreman"]["stop_reason"] == "cancelled"
    assert events[-1]["event"] == "run_cancelled"
    assert again.status_code == 200  # cancelling a cancelled run is harmless
    assert thread_after["status"] == "idle"
    assert follow_up.status_code == 200 and "restarted" in follow_up.json()["final_answer"]


def test_runs_kill_switch_pauses_new_runs(slow_server: Server) -> None:
    with slow_server.client() as c:
        thread = _thread(c)
        c.put("/v1/admin/killswitch", json={"paused": True})
        paused = c.post(f"/threads/{thread}/runs", json=BODY)
        c.put("/v1/admin/killswitch", json={"paused": False})
        bad_tool = c.put("/v1/admin/killswitch", json={"disabled_tools": ["rm_rf"]})

    assert paused.status_code == 409 and "paused" in paused.json()["detail"]
    assert bad_tool.status_code == 422 and bad_tool.json()["field"] == "disabled_tools"


def test_runs_sse_reconnect_with_last_event_id_has_no_gaps_or_duplicates(
        slow_server: Server) -> None:
    with slow_server.client() as c:
        thread = _thread(c)
        run = c.post(f"/threads/{thread}/runs", json=BODY).json()
        path = f"/v1/runs/{run['run_id']}/events"
        first: list[dict[str, Any]] = []
        with c.stream("GET", path) as r:  # read a few live events, then drop the connection
            buf = ""
            for chunk in r.iter_text():
                buf += chunk
                first = [e for e in _sse(buf) if "id" in e][:-1]
                if len(first) >= 5:
                    break
        rest = _sse(c.get(path, headers={"Last-Event-ID": first[-1]["id"]}).text)
        full = _sse(c.get(path).text)

    seqs = [int(e["id"]) for e in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e["id"] for e in full] == [str(s) for s in seqs]
    assert rest[-1]["event"] == "run_completed"
    assert json.loads(rest[-1]["data"])["data"]["stop_reason"] == "satisfied"


def test_runs_platform_stream_resumes_after_last_event_id(slow_server: Server) -> None:
    with slow_server.client() as c:
        thread = _thread(c)
        run = c.post(f"/threads/{thread}/runs/wait", json={
            **BODY, "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]},
            "assistant_id": "support"}).json()
        [latest] = c.get(f"/threads/{thread}/runs").json()
        path = f"/threads/{thread}/runs/{latest['run_id']}/stream"
        whole = _sse(c.get(path, params={"stream_mode": ["custom"]}).text)
        cut = whole[len(whole) // 2]
        tail = _sse(c.get(path, params={"stream_mode": ["custom"]},
                          headers={"Last-Event-ID": cut["id"]}).text)

    assert "in transit" in run["final_answer"]
    assert [e["id"] for e in tail] == [e["id"] for e in whole[len(whole) // 2 + 1:]]
    assert tail[-1]["event"] == "end"


def test_runs_budget_usd_caps_the_run_and_still_answers(server: Server) -> None:
    with server.client() as c:
        thread = _thread(c)
        values = c.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "support", "budget_usd": 0.0008,
            "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}}).json()
        [run] = c.get(f"/threads/{thread}/runs").json()
        stream = c.get(f"/v1/runs/{run['run_id']}/events", params={"follow": "false"}).text

    assert values["stop_reason"] == "budget_exhausted"
    assert values["final_answer"]
    calls = [json.loads(e["data"]) for e in _sse(stream) if e.get("event") == "model_call"]
    spent = sum(float(call.get("data", call).get("cost_usd", 0.0)) for call in calls)
    assert calls and spent <= 0.0008
