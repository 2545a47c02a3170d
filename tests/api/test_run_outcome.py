"""A run that ends without doing its task is told apart from success in every API."""

from __future__ import annotations

import json

import openai

from tests.api.conftest import Server

UNKNOWN = "Translate our FAQ into French"  # the offline models cannot do it: nothing is done


def test_run_outcome_chat_reports_error_status_and_the_answer(server: Server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)

    reply = client.chat.completions.create(
        model="support", messages=[{"role": "user", "content": UNKNOWN}])

    extra = reply.model_extra["foreman"]  # type: ignore[index]
    assert extra["status"] == "error" and extra["stop_reason"] == "blocked"
    content = reply.choices[0].message.content or ""
    assert content.startswith("Nothing was done") and "offline" in content


def test_run_outcome_runs_api_status_wait_and_events(server: Server) -> None:
    with server.client() as c:
        thread = c.post("/threads", json={}).json()["thread_id"]
        waited = c.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "support",
            "input": {"messages": [{"role": "user", "content": UNKNOWN}]}}).json()
        [run] = c.get(f"/threads/{thread}/runs").json()
        got = c.get(f"/threads/{thread}/runs/{run['run_id']}").json()
        thread_view = c.get(f"/threads/{thread}").json()
        events = c.get(f"/v1/runs/{run['run_id']}/events", params={"follow": "false"}).text

    assert waited["__error__"]["error"] == "RunError"
    assert "without completing its task" in waited["__error__"]["message"]
    assert waited["final_answer"].startswith("Nothing was done")
    assert got["status"] == "error"
    assert got["foreman"]["stop_reason"] == "blocked"
    assert got["foreman"]["final_answer"] == waited["final_answer"]
    assert thread_view["status"] == "error"
    kinds = [line.removeprefix("event: ") for line in events.splitlines()
             if line.startswith("event: ")]
    assert kinds[-1] == "run_failed" and "run_completed" not in kinds
    failed = [json.loads(line.removeprefix("data: ")) for line in events.splitlines()
              if line.startswith("data: ") and '"stop_reason"' in line][-1]
    assert failed.get("data", failed)["stop_reason"] == "blocked"
