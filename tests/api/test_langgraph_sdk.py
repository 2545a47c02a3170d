"""``langgraph-sdk`` unchanged against a real server: thread, wait, stream, interrupt, resume."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from langgraph_sdk import get_client

from tests.api.conftest import SUPPORT_REFUND, SUPPORT_WHERE, Server


def _refunds(server: Server) -> list[tuple[str, float]]:
    conn = sqlite3.connect(server.data_dir / "sandbox.db")
    try:
        return list(conn.execute("SELECT order_id, amount_usd FROM refunds"))
    finally:
        conn.close()


async def test_langgraph_sdk_wait_stream_interrupt_and_resume(server: Server) -> None:
    client = get_client(url=server.url, api_key=None)
    assistants = await client.assistants.search(graph_id="support")
    thread = await client.threads.create(metadata={"case": "sdk"})

    done = await client.runs.wait(thread["thread_id"], assistants[0]["assistant_id"],
                                  input={"messages": [{"role": "user", "content": SUPPORT_WHERE}]})
    assert "in transit" in done["final_answer"]
    assert [m["type"] for m in done["messages"]] == ["human", "ai"]

    parts = [p async for p in client.runs.stream(
        thread["thread_id"], "support", stream_mode=["values", "updates", "custom"],
        input={"messages": [{"role": "user", "content": SUPPORT_REFUND}]})]
    kinds = [p.event for p in parts]
    assert kinds[0] == "metadata" and kinds[-1] == "end"
    assert {"updates", "custom", "values"} <= set(kinds)
    final_values = [p.data for p in parts if p.event == "values"][-1]
    pending = final_values["__interrupt__"]
    assert pending[0]["value"]["action_request"]["action"] == "issue_refund"
    assert _refunds(server) == []

    state = await client.threads.get(thread["thread_id"])
    assert state["status"] == "interrupted"
    [(_task, interrupts)] = state["interrupts"].items()
    assert interrupts[0]["id"] == pending[0]["id"]

    resumed = [p async for p in client.runs.stream(
        thread["thread_id"], "support", stream_mode="custom",
        command={"resume": [{"type": "accept", "args": None}]})]
    types = [p.data["type"] for p in resumed if p.event == "custom"]
    assert types[0] == "approval_decided" and types[-1] == "run_completed"
    assert "run_started" not in types  # a resume streams only what happens from now on
    assert _refunds(server) == [("O-5002", 189.0)]

    after = await client.threads.get(thread["thread_id"])
    runs = await client.runs.list(thread["thread_id"])
    assert after["status"] == "idle" and after["interrupts"] == {}
    assert [r["status"] for r in runs] == ["success", "success"]
    history = await client.threads.get_history(thread["thread_id"], limit=3)
    assert len(history) == 3 and history[0]["next"] == []
    found = await client.threads.search(metadata={"case": "sdk"})
    assert [t["thread_id"] for t in found] == [thread["thread_id"]]


async def test_langgraph_sdk_background_run_join_and_resume_by_id(server: Server) -> None:
    client = get_client(url=server.url, api_key=None)
    thread = await client.threads.create()

    task = {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}
    run = await client.runs.create(thread["thread_id"], "support", input=task)
    joined = await client.runs.join(thread["thread_id"], run["run_id"])
    [pending] = joined["__interrupt__"]
    got = await client.runs.get(thread["thread_id"], run["run_id"])
    assert got["status"] == "interrupted"

    refunds_before = _refunds(server)
    # The run then ends without doing its task: runs.wait would raise RunError by default.
    final = await client.runs.wait(
        thread["thread_id"], "support", raise_error=False,
        command={"resume": {pending["id"]: {"decisions": [
            {"type": "reject", "message": "not without a photo"}]}}})
    with pytest.raises(httpx.HTTPStatusError) as stale:
        await client.runs.wait(thread["thread_id"], "support",
                               command={"resume": {pending["id"]: {"decision": "approve"}}})

    # The rejection reaches the manager, which ends the run instead of asking again.
    assert "__interrupt__" not in final
    assert final["stop_reason"] == "blocked" and final["__error__"]["error"] == "RunError"
    assert "not without a photo" in final["final_answer"]
    assert _refunds(server) == refunds_before  # rejected: nothing was refunded
    assert stale.value.response.status_code == 409
