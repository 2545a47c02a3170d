"""The console's JSON under /v1/runs: signed in, tenant-scoped, in OpenAPI, and who may
decide a run's approvals from it."""

from __future__ import annotations

import json

from tests.api.conftest import SUPPORT_REFUND, Server


def _paused_run(server: Server) -> dict[str, str]:
    with server.client("alice") as c:
        thread = c.post("/threads", json={}).json()["thread_id"]
        c.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "support",
            "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}})
        run = c.get(f"/threads/{thread}/runs").json()[0]
    return {"thread_id": thread, "run_id": run["run_id"]}


def test_console_api_lists_and_details_runs_within_the_tenant(keyed_server: Server) -> None:
    run = _paused_run(keyed_server)
    rid = run["run_id"]
    with keyed_server.client("bob") as bob:
        page = bob.get("/v1/runs", params={"status": "interrupted", "team": "support"}).json()
        row = next(r for r in page["runs"] if r["run_id"] == rid)
        assert row["requester"] == "alice" and row["pending_approvals"] == 1
        assert row["cost_usd"] > 0 and "support" in page["teams"]
        detail = bob.get(f"/v1/runs/{rid}").json()
        assert detail["status"] == "interrupted" and detail["can_decide"] is True
        (approval,) = detail["approvals"]
        assert approval["action"] == "issue_refund" and approval["decidable"] is True
        assert [s["status"] for s in detail["ledger"]["plan"]][:2] == ["done", "running"]
        assert {t["tier"] for t in detail["cost"]["by_tier"]} >= {"large", "small"}
        stream = bob.get(f"/v1/runs/{rid}/timeline", params={"follow": "false"})
        assert stream.status_code == 200
        events = [json.loads(line[5:]) for line in stream.text.splitlines()
                  if line.startswith("data:")]
        assert events[0]["type"] == "run_started"
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert any(e["type"] == "tool_result" and e["data"]["untrusted"] for e in events)
        later = bob.get(f"/v1/runs/{rid}/timeline",
                        params={"follow": "false", "after": len(events) - 1}).text
        assert later.count("data:") == 1
    with keyed_server.client("alice") as alice:
        (mine,) = alice.get(f"/v1/runs/{rid}").json()["approvals"]
        assert mine["decidable"] is False  # the requester does not decide her own run


def test_console_api_hides_other_tenants_and_needs_a_key(keyed_server: Server) -> None:
    rid = _paused_run(keyed_server)["run_id"]
    with keyed_server.client("eve") as eve:
        assert rid not in {r["run_id"] for r in eve.get("/v1/runs").json()["runs"]}
        assert eve.get(f"/v1/runs/{rid}").status_code == 404
        assert eve.get(f"/v1/runs/{rid}/timeline", params={"follow": "false"}
                       ).status_code == 404
    with keyed_server.client() as anonymous:
        assert anonymous.get("/v1/runs").status_code == 401
        assert anonymous.get(f"/v1/runs/{rid}").status_code == 401
        page = anonymous.get("/console")
        assert page.status_code == 200 and "Foreman runs" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        schema = anonymous.get("/openapi.json").json()["paths"]
        assert {"/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/timeline"} <= set(schema)
    with keyed_server.client("bob") as bob:
        bad = bob.get("/v1/runs", params={"status": "done", "limit": 0})
        assert bad.status_code == 422 and bad.json()["field"] in {"query.status",
                                                                  "query.limit"}
