"""Table-driven auth matrix over every route: 401 without/with a bad key, 403 for a missing
role, 404 for another tenant's objects; plus the approval RBAC rules on resume."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.api.app import create_app
from app.config.settings import Settings
from tests.api.conftest import SUPPORT_REFUND, SUPPORT_WHERE, Server

RUN_BODY = {"assistant_id": "support",
            "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}}
CHAT_BODY = {"model": "support", "messages": [{"role": "user", "content": SUPPORT_WHERE}]}
RESUME_BODY = {"assistant_id": "support", "command": {"resume": {"decision": "approve"}}}

# (method, path, body, principal lacking the role or None, tenant-scoped?)
ROUTES: list[tuple[str, str, dict[str, Any] | None, str | None, bool]] = [
    ("GET", "/v1/models", None, None, False),
    ("GET", "/v1/models/support", None, None, False),
    ("POST", "/v1/chat/completions", CHAT_BODY, "bob", False),
    ("POST", "/assistants/search", {}, None, False),
    ("GET", "/assistants/support", None, None, False),
    ("POST", "/threads", {}, "bob", False),
    ("POST", "/threads/search", {}, None, False),
    ("GET", "/threads/{T}", None, None, True),
    ("GET", "/threads/{T}/state", None, None, True),
    ("POST", "/threads/{T}/history", {}, None, True),
    ("GET", "/threads/{T}/runs", None, None, True),
    ("POST", "/threads/{T}/runs", RUN_BODY, "bob", True),
    ("POST", "/threads/{T}/runs/wait", RUN_BODY, "bob", True),
    ("POST", "/threads/{T}/runs/stream", RUN_BODY, "bob", True),
    ("POST", "/threads/{T}/runs/wait", RESUME_BODY, "alice", True),
    ("GET", "/threads/{T}/runs/{R}", None, None, True),
    ("GET", "/threads/{T}/runs/{R}/join", None, None, True),
    ("GET", "/threads/{T}/runs/{R}/stream", None, None, True),
    ("POST", "/threads/{T}/runs/{R}/cancel", None, "bob", True),
    ("GET", "/v1/runs/{R}/events", None, None, True),
    ("GET", "/v1/runs", None, None, False),
    ("GET", "/v1/runs/{R}", None, None, True),
    ("GET", "/v1/runs/{R}/timeline", None, None, True),
    ("GET", "/v1/admin/killswitch", None, "alice", False),
    ("PUT", "/v1/admin/killswitch", {}, "alice", False),
    ("GET", "/v1/platform/killswitch", None, "root", False),
    ("PUT", "/v1/platform/killswitch", {}, "root", False),
    ("GET", "/metrics", None, "bob", False),
    ("GET", "/v1/approvals", None, "alice", False),
    ("GET", "/v1/approvals/{A}", None, "alice", True),
    ("POST", "/v1/approvals/{A}/decision", {"decision": "reject", "message": "no"}, "alice",
     True),
    ("GET", "/v1/audit", None, "alice", False),
    ("GET", "/v1/audit/verify", None, "alice", False),
    ("GET", "/v1/platform/audit", None, "root", False),
    ("GET", "/v1/platform/audit/verify", None, "root", False),
]


@pytest.fixture(scope="module")
def acme(keyed_process: Server) -> dict[str, str]:
    """A thread of tenant acme with a run paused for a refund approval."""
    with keyed_process.fresh_world().client("alice") as c:
        thread = c.post("/threads", json={}).json()["thread_id"]
        c.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "support",
            "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}})
        run = c.get(f"/threads/{thread}/runs").json()[0]
        (waiting,) = [i for t in c.get(f"/threads/{thread}").json()["interrupts"].values()
                      for i in t]
    assert run["status"] == "interrupted"
    return {"T": thread, "R": run["run_id"], "A": waiting["value"]["approval_id"]}


def _cases() -> list[Any]:
    cases = []
    for method, path, body, lacking, scoped in ROUTES:
        name = f"{method} {path}" + (" (resume)" if body is RESUME_BODY else "")
        cases.append(pytest.param(method, path, body, None, 401, id=f"{name} no key"))
        cases.append(pytest.param(method, path, body, "mallory", 401, id=f"{name} bad key"))
        if lacking:
            cases.append(pytest.param(method, path, body, lacking, 403, id=f"{name} role"))
        if scoped:
            cases.append(pytest.param(method, path, body, "eve", 404, id=f"{name} tenant"))
    return cases


# Beyond the role: carol is an approver outside the group the pending approval needs; ops
# holds only the operator role, which grants nothing inside a tenant.
EXTRA: list[tuple[str, str, dict[str, Any] | None, str, int]] = [
    ("POST", "/v1/approvals/{A}/decision", {"decision": "approve"}, "carol", 403),
    ("POST", "/threads/{T}/runs/wait", RESUME_BODY, "carol", 403),
    ("GET", "/v1/admin/killswitch", None, "ops", 403),
    ("PUT", "/v1/admin/killswitch", {"paused": True}, "ops", 403),
    ("GET", "/v1/approvals", None, "ops", 403),
    ("POST", "/threads", {}, "ops", 403),
    ("POST", "/v1/approvals/{A}/decision", {"decision": "approve"}, "ops", 403),
    ("GET", "/v1/platform/killswitch", None, "ops", 200),
    ("GET", "/metrics", None, "ops", 200),
    ("GET", "/metrics", None, "root", 200),
    ("GET", "/v1/admin/killswitch", None, "gus", 200),
    ("GET", "/v1/approvals/{A}", None, "gus", 404),
    # The platform chain is the operator's alone: no tenant role reads it.
    ("GET", "/v1/platform/audit", None, "ops", 200),
    ("GET", "/v1/platform/audit/verify", None, "ops", 200),
    ("GET", "/v1/platform/audit", None, "bob", 403),
    ("GET", "/v1/platform/audit/verify", None, "gus", 403),
    ("GET", "/v1/audit", None, "ops", 403),
]


def _extra_cases() -> list[Any]:
    return [pytest.param(m, p, b, who, status, id=f"{m} {p} {who}")
            for m, p, b, who, status in EXTRA]


MATRIX = _cases() + _extra_cases()


@pytest.mark.parametrize(("method", "path", "body", "who", "status"), MATRIX)
def test_auth_matrix(keyed_server: Server, acme: dict[str, str], method: str, path: str,
                     body: dict[str, Any] | None, who: str | None, status: int) -> None:
    headers = {"Authorization": f"Bearer sk-test-{who}"} if who else {}
    with httpx.Client(base_url=keyed_server.url, timeout=30) as c:
        r = c.request(method, path.format(**acme), json=body, headers=headers)
    assert r.status_code == status, r.text


def test_auth_matrix_covers_every_route(settings: Settings) -> None:
    public = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect",
              "/redoc"}
    paths = create_app(settings).openapi()["paths"]
    served = {(m.upper(), p) for p, ops in paths.items() for m in ops if p not in public}
    named = {(m, p.replace("{T}", "{thread_id}").replace("{R}", "{run_id}")
              .replace("{A}", "{approval_id}")
              .replace("/support", "/{assistant_id}" if p.startswith("/assistants") else
                       "/{model}")) for m, p, *_ in ROUTES}
    assert served == named
    assert len(MATRIX) == 106 + len(EXTRA)


def test_auth_x_api_key_header_and_tenant_scoped_search(keyed_server: Server,
                                                        acme: dict[str, str]) -> None:
    with httpx.Client(base_url=keyed_server.url, headers={"x-api-key": "sk-test-eve"}) as c:
        mine = c.post("/threads/search", json={"limit": 100}).json()
    assert acme["T"] not in [t["thread_id"] for t in mine]


def test_auth_resume_needs_an_approver_other_than_the_requester(
        keyed_server: Server, acme: dict[str, str]) -> None:
    path = f"/threads/{acme['T']}/runs/wait"
    with keyed_server.client("alice") as alice, keyed_server.client("bob") as bob:
        denied = alice.post(path, json=RESUME_BODY)
        done = bob.post(path, json={"assistant_id": "support",
                                    "command": {"resume": [{"type": "accept"}]}})
        again = bob.post(path, json=RESUME_BODY)
        events = bob.get(f"/v1/runs/{acme['R']}/events", params={"follow": "false"}).text

    assert denied.status_code == 403
    assert done.status_code == 200 and "refunded" in done.json()["final_answer"]
    assert again.status_code == 409
    assert '"decision": "approve", "by": "bob"' in events


def test_auth_inbox_lists_what_the_principal_may_decide(keyed_server: Server) -> None:
    with keyed_server.client("alice") as alice:
        thread = alice.post("/threads", json={}).json()["thread_id"]
        alice.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "support",
            "input": {"messages": [{"role": "user", "content": SUPPORT_REFUND}]}})
        (waiting,) = [i for t in alice.get(f"/threads/{thread}").json()["interrupts"].values()
                      for i in t]
    approval_id = waiting["value"]["approval_id"]
    with keyed_server.client("bob") as bob, keyed_server.client("carol") as carol:
        as_bob = {a["id"]: a for a in bob.get("/v1/approvals?status=pending").json()}
        as_carol = {a["id"]: a for a in carol.get("/v1/approvals?status=pending").json()}
        refused = carol.post(f"/v1/approvals/{approval_id}/decision",
                             json={"decision": "approve"})
        audit = bob.get("/v1/audit").json()
        still = bob.get(f"/v1/approvals/{approval_id}").json()

    assert as_bob[approval_id]["may_decide"] is True and as_bob[approval_id]["refusal"] is None
    shown = as_carol[approval_id]
    assert shown["may_decide"] is False and "billing-leads" in shown["refusal"]
    assert shown["approver_group"] == "billing-leads"
    assert refused.status_code == 403 and "billing-leads" in refused.json()["detail"]
    assert [e["actor"] for e in audit if e["type"] == "approval_refused"
            and e["data"]["approval_id"] == approval_id] == ["carol"]
    assert still["status"] == "pending" and still["may_decide"] is True


def test_auth_platform_switch_changes_are_chained_for_the_operator_only(
        keyed_server: Server) -> None:
    with keyed_server.client("ops") as ops, keyed_server.client("root") as root, \
            keyed_server.client("gus") as gus:
        before = ops.get("/v1/platform/audit").json()
        ops.put("/v1/platform/killswitch", json={"disabled_tools": ["issue_refund"]})
        ops.put("/v1/platform/killswitch", json={"disabled_tools": []})
        entries = ops.get("/v1/platform/audit").json()
        verified = ops.get("/v1/platform/audit/verify").json()
        as_admin = root.get("/v1/platform/audit")
        tenant_views = [root.get("/v1/audit").json(), gus.get("/v1/audit").json()]
        tenant_verified = root.get("/v1/audit/verify").json()

    new = entries[len(before):]
    assert [(e["type"], e["actor"], e["data"]["scope"], e["data"]["disabled_tools"])
            for e in new] == [("kill_switch_changed", "ops", "platform", ["issue_refund"]),
                              ("kill_switch_changed", "ops", "platform", [])]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert verified == {"ok": True, "entries": len(entries), "first_bad_entry": None}
    assert as_admin.status_code == 403
    # No tenant's trail holds the platform's entries, and each verifies on its own.
    assert not [e for view in tenant_views for e in view
                if e["type"] == "kill_switch_changed" and e["actor"] == "ops"]
    assert tenant_verified["ok"] is True
