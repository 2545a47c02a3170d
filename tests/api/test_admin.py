"""Admin is per tenant: the kill switch of one tenant's admin holds for that tenant only,
the platform-wide switch needs an operator, every change is audited with who made it and
survives a restart; ``/metrics`` is tenant-filtered for an admin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import SUPPORT_WHERE, Server, keyed_env

RUN = {"assistant_id": "support",
       "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}}


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Its own server: these tests flip switches and restart it."""
    s = Server(tmp_path_factory.mktemp("admin"),
               {"FOREMAN_TEST_GATE": "refund", **keyed_env()}).start()
    yield s
    s.stop()


def start(c: httpx.Client) -> httpx.Response:
    thread = c.post("/threads", json={}).json()["thread_id"]
    return c.post(f"/threads/{thread}/runs/wait", json=RUN)


def switch_entries(c: httpx.Client) -> list[dict[str, Any]]:
    return [e for e in c.get("/v1/audit").json() if e["type"] == "kill_switch_changed"]


def test_admin_tenant_kill_switch_holds_for_its_tenant_only(admin_server: Server) -> None:
    with admin_server.client("root") as root, admin_server.client("alice") as alice, \
            admin_server.client("eve") as eve, admin_server.client("gus") as gus, \
            admin_server.client("bob") as bob:
        changed = root.put("/v1/admin/killswitch", json={"paused": True})
        acme_run = start(alice)
        globex_run = start(eve)
        globex_view = gus.get("/v1/admin/killswitch").json()
        root.put("/v1/admin/killswitch", json={"paused": False})
        after = start(alice)
        audited = switch_entries(bob)
        globex_audit = switch_entries(eve)

    assert changed.status_code == 200
    assert changed.json()["scope"] == "acme" and changed.json()["paused"] is True
    assert acme_run.status_code == 409 and "tenant acme" in acme_run.json()["detail"]
    assert globex_run.status_code == 200
    assert globex_view["scope"] == "globex" and globex_view["paused"] is False
    assert after.status_code == 200
    assert [(e["actor"], e["data"]["paused"]) for e in audited] == [("root", True),
                                                                    ("root", False)]
    assert globex_audit == []


def test_admin_platform_switch_needs_the_operator_role(admin_server: Server) -> None:
    with admin_server.client("root") as root, admin_server.client("ops") as ops, \
            admin_server.client("eve") as eve:
        by_admin = root.put("/v1/platform/killswitch", json={"paused": True})
        ops_on_tenant = ops.put("/v1/admin/killswitch", json={"paused": True})
        by_operator = ops.put("/v1/platform/killswitch", json={"paused": True})
        globex_run = start(eve)
        seen_by_tenant = root.get("/v1/admin/killswitch").json()
        ops.put("/v1/platform/killswitch", json={"paused": False})
        resumed = start(eve)

    assert by_admin.status_code == 403 and ops_on_tenant.status_code == 403
    assert by_operator.status_code == 200 and by_operator.json()["scope"] == "platform"
    assert globex_run.status_code == 409 and "platform-wide" in globex_run.json()["detail"]
    assert seen_by_tenant["platform_paused"] is True and seen_by_tenant["paused"] is False
    assert resumed.status_code == 200


def test_admin_disabled_tools_and_caps_are_per_tenant_and_survive_a_restart(
        admin_server: Server) -> None:
    with admin_server.client("root") as root:
        set_ = root.put("/v1/admin/killswitch", json={"disabled_tools": ["issue_refund"],
                                                      "max_concurrent_runs": 3})
        unknown = root.put("/v1/admin/killswitch", json={"disabled_tools": ["rm_rf"]})
    admin_server.stop()
    admin_server.start()
    with admin_server.client("root") as root, admin_server.client("gus") as gus:
        kept = root.get("/v1/admin/killswitch").json()
        other = gus.get("/v1/admin/killswitch").json()
        lifted = root.put("/v1/admin/killswitch", json={"disabled_tools": [],
                                                        "max_concurrent_runs": None}).json()

    assert set_.status_code == 200 and unknown.status_code == 422
    assert unknown.json()["field"] == "disabled_tools"
    assert (kept["disabled_tools"], kept["max_concurrent_runs"], kept["updated_by"]) == (
        ["issue_refund"], 3, "root")
    assert other["disabled_tools"] == [] and other["max_concurrent_runs"] is None
    assert lifted["disabled_tools"] == [] and lifted["max_concurrent_runs"] is None


def runs_total(text: str) -> float:
    return sum(float(v) for v in re.findall(r'^foreman_runs\{status="[a-z]+"\} (\S+)$', text,
                                            flags=re.M))


def tenant_runs(c: httpx.Client) -> int:
    threads = c.post("/threads/search", json={"limit": 1000}).json()
    return sum(len(c.get(f"/threads/{t['thread_id']}/runs", params={"limit": 1000}).json())
               for t in threads)


def test_admin_metrics_are_tenant_filtered_for_admins(admin_server: Server) -> None:
    with admin_server.client("alice") as alice, admin_server.client("eve") as eve:
        start(alice)
        start(eve)
    with admin_server.client("root") as root, admin_server.client("gus") as gus, \
            admin_server.client("ops") as ops, admin_server.client("bob") as bob:
        acme, globex = root.get("/metrics"), gus.get("/metrics")
        everyone, approver = ops.get("/metrics"), bob.get("/metrics")
        acme_runs, globex_runs = tenant_runs(root), tenant_runs(gus)

    assert acme.status_code == globex.status_code == everyone.status_code == 200
    assert approver.status_code == 403
    assert runs_total(acme.text) == acme_runs >= 1
    assert runs_total(globex.text) == globex_runs >= 1
    assert runs_total(everyone.text) == acme_runs + globex_runs
    assert "foreman_http_request_duration_seconds" not in acme.text
    assert "foreman_http_request_duration_seconds" in everyone.text
