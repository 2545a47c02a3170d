"""Table-driven auth matrix over every route: 401 without/with a bad key, 403 for a missing
role, 404 for another tenant's objects; plus the approval RBAC rules on resume."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.api.app import create_app
from app.settings import Settings
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
    ("GET", "/metrics", None, "bob", False),
    ("GET", "/v1/approvals", None, "alice", False),
    ("GET", "/v1/approvals/{A}", None, "alice", True),
    ("POST", "/v1/approvals/{A}/decision", {"decision": "reject", "message": "no"}, "alice",
     True),
    ("GET", "/v1/audit", None, "alice", False),
    ("GET", "/v1/audit/verify", None, "alice", False),
]


@pytest.fixture(scope="module")
def acme(keyed_server: Server) -> dict[str, str]:
    """A thread of tenant acme with a run paused for a refund approval."""
    with keyed_server.client("alice") as c:
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


MATRIX = _cases()


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
    assert len(MATRIX) == 94


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
