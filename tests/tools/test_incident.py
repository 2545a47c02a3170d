"""Incident-response tools against a freshly reset sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tools.catalog import get_tool
from tools.demo import context as demo_context
from tools.records import sandbox_db
from tools.sandbox import connect
from tools.spec import ToolContext, ToolError


def _ctx(target: str, key: str = "thread-1:call-1") -> ToolContext:
    return demo_context(target, key)


def _call(ctx: ToolContext, name: str, **args: Any) -> dict[str, Any]:
    spec = get_tool(name)
    return spec.run(ctx, spec.validate(args))


def _rows(ctx: ToolContext, sql: str, *params: object) -> list[Any]:
    conn = connect(sandbox_db(ctx))
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _service(ctx: ToolContext, name: str) -> dict[str, Any]:
    return dict(_rows(ctx, "SELECT * FROM services WHERE name = ?", name)[0])


def test_get_service_status_reports_degradation(sandbox_target: str) -> None:
    out = _call(_ctx(sandbox_target), "get_service_status", service="checkout-api")
    assert (out["status"], out["error_rate"], out["version"]) == ("degraded", 0.23, "v4.2.0")
    assert out["previous_version"] == "v4.1.3"
    assert (out["open_incidents"], out["remediations"]) == ([], [])
    assert "min_healthy_replicas" not in out


def test_get_service_status_unknown_raises_tool_error(sandbox_target: str) -> None:
    with pytest.raises(ToolError, match="unknown service billing-api"):
        _call(_ctx(sandbox_target), "get_service_status", service="billing-api")


def test_list_services_returns_all(sandbox_target: str) -> None:
    out = _call(_ctx(sandbox_target), "list_services")
    names = {s["name"] for s in out["services"]}
    assert {"checkout-api", "payments-worker", "search-api", "inventory-api"} <= names


def test_get_runbook_returns_steps(sandbox_target: str) -> None:
    out = _call(_ctx(sandbox_target), "get_runbook", service="search-api")
    assert [r["title"] for r in out["runbooks"]] == ["Errors after deploy"]
    assert "roll back" in out["runbooks"][0]["body"].lower()


def test_open_incident_writes_row(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:inc")
    out = _call(ctx, "open_incident", service="checkout-api", severity="sev2", summary="5xx spike")
    assert out["id"].startswith("INC-") and out["status"] == "open"
    rows = _rows(ctx, "SELECT id, service, severity, status FROM incidents")
    assert [tuple(r) for r in rows] == [(out["id"], "checkout-api", "sev2", "open")]
    status = _call(ctx, "get_service_status", service="checkout-api")
    assert [i["id"] for i in status["open_incidents"]] == [out["id"]]


def test_open_incident_same_key_replays(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:inc")
    first = _call(ctx, "open_incident", service="search-api", severity="sev3", summary="errors")
    second = _call(ctx, "open_incident", service="search-api", severity="sev3", summary="errors")
    assert second["replayed"] is True and second["id"] == first["id"]
    assert len(_rows(ctx, "SELECT id FROM incidents")) == 1


def test_open_incident_unknown_service_writes_nothing(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target)
    with pytest.raises(ToolError, match="unknown service"):
        _call(ctx, "open_incident", service="nope-api", severity="sev1", summary="broken")
    assert _rows(ctx, "SELECT id FROM incidents") == []


def test_open_incident_bad_severity_raises_validation_error() -> None:
    with pytest.raises(ValidationError):
        get_tool("open_incident").validate(
            {"service": "checkout-api", "severity": "sev0", "summary": "bad sev"}
        )


def test_post_incident_update_writes_row_and_sets_status(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:open")
    inc = _call(ctx, "open_incident", service="checkout-api", severity="sev2", summary="5xx spike")
    upd = demo_context(sandbox_db(ctx), "t:upd")
    out = _call(
        upd, "post_incident_update", incident_id=inc["id"], message="Restarted.", status="mitigated"
    )
    assert out["incident"]["status"] == "mitigated"
    rows = _rows(ctx, "SELECT incident_id, message, status FROM incident_updates")
    assert [tuple(r) for r in rows] == [(inc["id"], "Restarted.", "mitigated")]
    assert _rows(ctx, "SELECT status FROM incidents")[0][0] == "mitigated"


def test_post_incident_update_without_status_keeps_status(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:open")
    inc = _call(ctx, "open_incident", service="search-api", severity="sev3", summary="errors up")
    upd = demo_context(sandbox_db(ctx), "t:upd")
    out = _call(upd, "post_incident_update", incident_id=inc["id"], message="Investigating.")
    assert out["status"] is None and out["incident"]["status"] == "open"


def test_post_incident_update_same_key_replays(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:open")
    inc = _call(ctx, "open_incident", service="search-api", severity="sev3", summary="errors up")
    upd = demo_context(sandbox_db(ctx), "t:upd")
    _call(upd, "post_incident_update", incident_id=inc["id"], message="Looking.")
    again = _call(upd, "post_incident_update", incident_id=inc["id"], message="Looking.")
    assert again["replayed"] is True
    assert len(_rows(ctx, "SELECT id FROM incident_updates")) == 1


def test_post_incident_update_unknown_incident_raises(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target)
    with pytest.raises(ToolError, match="unknown incident INC-DEADBEEF"):
        _call(ctx, "post_incident_update", incident_id="INC-DEADBEEF", message="hello")
    assert _rows(ctx, "SELECT id FROM incident_updates") == []


def test_restart_service_heals_and_records(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:restart")
    out = _call(ctx, "restart_service", service="checkout-api")
    assert out["action"] == "restart" and out["replayed"] is False
    svc = _service(ctx, "checkout-api")
    assert (svc["status"], svc["error_rate"]) == ("healthy", 0.01)
    rows = _rows(ctx, "SELECT service, action FROM remediations")
    assert [tuple(r) for r in rows] == [("checkout-api", "restart")]


def test_restart_service_same_key_replays(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:restart")
    _call(ctx, "restart_service", service="checkout-api")
    again = _call(ctx, "restart_service", service="checkout-api")
    assert again["replayed"] is True
    assert len(_rows(ctx, "SELECT id FROM remediations")) == 1


def test_scale_service_fixes_payments_latency(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:scale")
    out = _call(ctx, "scale_service", service="payments-worker", replicas=4)
    assert out["service_state"]["p95_latency_ms"] == 300
    svc = _service(ctx, "payments-worker")
    assert (svc["replicas"], svc["p95_latency_ms"]) == (4, 300)
    rows = _rows(ctx, "SELECT service, action, detail FROM remediations")
    assert [tuple(r) for r in rows] == [
        ("payments-worker", "scale", "scaled payments-worker from 2 to 4 replicas")
    ]


def test_scale_service_too_few_replicas_keeps_latency(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:scale")
    _call(ctx, "scale_service", service="payments-worker", replicas=3)
    svc = _service(ctx, "payments-worker")
    assert (svc["replicas"], svc["p95_latency_ms"]) == (3, 2400)


@pytest.mark.parametrize("replicas", [0, 21, -1])
def test_scale_service_out_of_range_raises_validation_error(replicas: int) -> None:
    with pytest.raises(ValidationError):
        get_tool("scale_service").validate({"service": "payments-worker", "replicas": replicas})


def test_rollback_service_restores_previous_version(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:rb")
    out = _call(ctx, "rollback_service", service="search-api")
    assert out["detail"] == "rolled back search-api from v2.3.1 to v2.3.0"
    svc = _service(ctx, "search-api")
    assert (svc["version"], svc["status"], svc["error_rate"]) == ("v2.3.0", "healthy", 0.01)
    assert [tuple(r) for r in _rows(ctx, "SELECT action FROM remediations")] == [("rollback",)]


def test_rollback_service_same_key_replays(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:rb")
    _call(ctx, "rollback_service", service="checkout-api")
    again = _call(ctx, "rollback_service", service="checkout-api")
    assert again["replayed"] is True
    assert _service(ctx, "checkout-api")["version"] == "v4.1.3"
    assert len(_rows(ctx, "SELECT id FROM remediations")) == 1


def test_rollback_service_without_previous_version_raises(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:rb")
    with pytest.raises(ToolError, match="no previous version"):
        _call(ctx, "rollback_service", service="inventory-api")
    assert _rows(ctx, "SELECT id FROM remediations") == []
    assert _service(ctx, "inventory-api")["version"] == "v0.9.2"


def test_rollback_service_twice_raises(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:rb1")
    _call(ctx, "rollback_service", service="search-api")
    second = demo_context(sandbox_db(ctx), "t:rb2")
    with pytest.raises(ToolError, match="no previous version"):
        _call(second, "rollback_service", service="search-api")
    assert _service(ctx, "search-api")["version"] == "v2.3.0"


def test_service_name_bad_format_raises_validation_error() -> None:
    with pytest.raises(ValidationError):
        get_tool("restart_service").validate({"service": "Checkout API; DROP TABLE"})
