"""A write that landed before a crash is reconciled into the answer a retry would give."""

from __future__ import annotations

from typing import Any

import pytest

from tools.catalog import ALL_TOOLS, get_tool
from tools.demo import context as demo_context
from tools.spec import SideEffect, ToolContext

# One call of every bundled write tool; the incident update needs the incident opened first.
WRITES: list[tuple[str, dict[str, Any]]] = [
    ("issue_refund", {"order_id": "O-5002", "amount_usd": 50.0, "reason": "arrived broken"}),
    ("send_email", {"customer_id": "C-1001", "subject": "Refund", "body": "Done."}),
    ("update_ticket", {"ticket_id": "T-9001", "status": "closed", "note": "refunded"}),
    ("open_incident", {"service": "checkout-api", "severity": "sev2", "summary": "500s rising"}),
    ("restart_service", {"service": "checkout-api"}),
    ("scale_service", {"service": "payments-worker", "replicas": 4}),
    ("rollback_service", {"service": "search-api"}),
]


def _call(ctx: ToolContext, name: str, args: dict[str, Any]) -> dict[str, Any]:
    spec = get_tool(name)
    return spec.run(ctx, spec.validate(args))


def test_every_bundled_write_is_covered() -> None:
    writes = {t.name for t in ALL_TOOLS.values() if t.side_effect == SideEffect.WRITE}
    assert writes == {name for name, _ in WRITES} | {"post_incident_update"}
    assert all(get_tool(name).reconcile is not None for name in writes)


@pytest.mark.parametrize("name,args", WRITES, ids=[w[0] for w in WRITES])
def test_reconcile_answers_what_a_retry_answers(sandbox_target: str, name: str,
                                                args: dict[str, Any]) -> None:
    ctx = demo_context(sandbox_target, "t-1:call-1")
    spec = get_tool(name)
    assert spec.reconcile is not None
    assert spec.reconcile(ctx) is None  # nothing landed yet: the caller may run the write
    first = _call(ctx, name, args)
    retried = _call(ctx, name, args)
    assert retried == {**first, "replayed": True}
    assert spec.reconcile(ctx) == retried


def test_reconciled_incident_update_shows_the_incident(sandbox_target: str) -> None:
    opened = _call(demo_context(sandbox_target, "t-1:open"), "open_incident",
                   {"service": "checkout-api", "severity": "sev2", "summary": "500s rising"})
    ctx = demo_context(sandbox_target, "t-1:update")
    args = {"incident_id": opened["id"], "message": "mitigated", "status": "mitigated"}
    first = _call(ctx, "post_incident_update", args)
    reconciled = get_tool("post_incident_update").reconcile(ctx)  # type: ignore[misc]
    assert reconciled == {**first, "replayed": True}
    assert reconciled["incident"]["status"] == "mitigated"
