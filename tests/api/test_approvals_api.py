"""The approvals and audit API against real servers: list/detail/decide, RBAC, single use,
SIGKILL while paused then approve after restart, shadow runs, audit verify."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import SUPPORT_REFUND, Server, keyed_env, wait_status


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A keyed server of its own: these tests refund the demo order, which others share."""
    s = Server(tmp_path_factory.mktemp("approvals"),
               {"FOREMAN_TEST_GATE": "refund", **keyed_env()}).start()
    yield s
    s.stop()


def start_refund(c: httpx.Client) -> dict[str, str]:
    thread = c.post("/threads", json={}).json()["thread_id"]
    c.post(f"/threads/{thread}/runs/wait", json={
        "assistant_id": "support",
        "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}})
    run = c.get(f"/threads/{thread}/runs").json()[0]
    assert run["status"] == "interrupted"
    (waiting,) = [i for t in c.get(f"/threads/{thread}").json()["interrupts"].values()
                  for i in t]
    return {"thread": thread, "run": run["run_id"], "approval": waiting["value"]["approval_id"]}


def test_approvals_api_list_detail_decide_with_rbac(keyed: Server) -> None:
    with keyed.client("alice") as alice, keyed.client("bob") as bob, \
            keyed.client("eve") as eve:
        ids = start_refund(alice)
        aid = ids["approval"]
        listed = bob.get("/v1/approvals", params={"status": "pending"}).json()
        detail = bob.get(f"/v1/approvals/{aid}").json()
        own = alice.get(f"/v1/approvals/{aid}")
        other_tenant = eve.get(f"/v1/approvals/{aid}")
        other_list = eve.get("/v1/approvals").json()
        other_decides = eve.post(f"/v1/approvals/{aid}/decision", json={"decision": "approve"})
        bad_edit = bob.post(f"/v1/approvals/{aid}/decision", json={
            "decision": "edit", "args": {"order_id": "O-5002", "amount_usd": "lots",
                                         "reason": "x y z"}})
        bad_body = bob.post(f"/v1/approvals/{aid}/decision", json={"decision": "maybe"})
        decided = bob.post(f"/v1/approvals/{aid}/decision", json={"decision": "approve"})
        again = bob.post(f"/v1/approvals/{aid}/decision", json={"decision": "reject",
                                                                "message": "late"})
        run = wait_status(bob, ids["thread"], ids["run"], {"success", "error"})
        decided_tab = bob.get("/v1/approvals", params={"status": "decided"}).json()
        audit = bob.get("/v1/audit", params={"run_id": ids["run"]}).json()
        verify = bob.get("/v1/audit/verify").json()
        eve_audit = eve.get("/v1/audit", params={"run_id": ids["run"]})

    assert aid in [a["id"] for a in listed]
    assert detail["action"] == "issue_refund" and detail["requester"] == "alice"
    assert detail["context"]["plan"]["plan"] and "age_s" in detail
    assert own.status_code == 403  # a requester is not an approver
    assert other_tenant.status_code == 404 and aid not in [a["id"] for a in other_list]
    assert other_decides.status_code == 404
    assert bad_edit.status_code == 422 and bad_edit.json()["field"] == "args.amount_usd"
    assert bad_body.status_code == 422
    assert decided.status_code == 200 and decided.json()["decided_by"] == "bob"
    assert again.status_code == 409
    assert run["status"] == "success" and "refunded" in run["foreman"]["final_answer"]
    assert aid in [a["id"] for a in decided_tab]
    kinds = [(e["type"], e["actor"]) for e in audit]
    assert ("run_started", "alice") in kinds and ("approval_decided", "bob") in kinds
    assert kinds[-1][0] == "run_completed"
    assert verify["ok"] is True and verify["first_bad_entry"] is None and verify["entries"] > 5
    assert eve_audit.status_code == 404


def test_approvals_api_requester_may_not_approve_own_run(keyed: Server) -> None:
    with keyed.fresh_world().client("root") as root, keyed.client("bob") as bob:
        ids = start_refund(root)  # the admin asked; the rule does not allow self-approval
        mine = root.post(f"/v1/approvals/{ids['approval']}/decision",
                         json={"decision": "approve"})
        via_resume = root.post(f"/threads/{ids['thread']}/runs/wait", json={
            "assistant_id": "support", "command": {"resume": {"decision": "approve"}}})
        rejected = bob.post(f"/v1/approvals/{ids['approval']}/decision",
                            json={"decision": "reject", "message": "duplicate request"})
        run = wait_status(bob, ids["thread"], ids["run"], {"success", "error"})

    assert mine.status_code == 403 and via_resume.status_code == 403
    assert rejected.status_code == 200
    assert "duplicate request" in run["foreman"]["final_answer"]


def test_approvals_survive_sigkill_and_approve_after_restart(tmp_path: Path) -> None:
    import sqlite3

    server = Server(tmp_path, keyed_env()).start()  # the bundled policy
    try:
        with server.client("alice") as alice:
            ids = start_refund(alice)
        server.kill()
        server.start()
        with server.client("bob") as bob:
            pending = bob.get("/v1/approvals", params={"status": "pending"}).json()
            r = bob.post(f"/v1/approvals/{ids['approval']}/decision",
                         json={"decision": "approve"})
            run = wait_status(bob, ids["thread"], ids["run"], {"success", "error"})
            verify = bob.get("/v1/audit/verify").json()
    finally:
        server.stop()
    conn = sqlite3.connect(tmp_path / "sandbox.db")
    refunds = conn.execute("SELECT order_id, amount_usd FROM refunds").fetchall()
    conn.close()

    assert [a["id"] for a in pending] == [ids["approval"]]
    assert r.status_code == 200 and run["status"] == "success"
    assert refunds == [("O-5002", 189.0)]
    assert verify["ok"] is True


@pytest.mark.parametrize("mode", ["shadow"])
def test_runs_api_shadow_mode_lists_what_would_have_been_done(server: Server, mode: str) -> None:
    with server.client() as c:
        thread = c.post("/threads", json={}).json()["thread_id"]
        before = c.get("/v1/approvals", params={"status": "pending"}).json()
        out: dict[str, Any] = c.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "support", "mode": mode,
            "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}}).json()
        after = c.get("/v1/approvals", params={"status": "pending"}).json()
        run = c.get(f"/threads/{thread}/runs").json()[0]

    assert run["status"] == "success" and run["metadata"]["mode"] == "shadow"
    answer = run["foreman"]["final_answer"]
    assert "Shadow mode: nothing was changed" in answer and "- issue_refund" in answer
    assert "__interrupt__" not in out and len(after) == len(before)
