"""Support tools against a freshly reset sandbox."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
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


def test_lookup_customer_returns_profile(sandbox_target: str) -> None:
    out = _call(_ctx(sandbox_target), "lookup_customer", customer_id="C-1002")
    assert out == {
        "id": "C-1002",
        "name": "Grace Hopper",
        "email": "grace@example.com",
        "tier": "silver",
    }


def test_lookup_customer_unknown_raises_tool_error(sandbox_target: str) -> None:
    with pytest.raises(ToolError, match="unknown customer C-9999"):
        _call(_ctx(sandbox_target), "lookup_customer", customer_id="C-9999")


def test_lookup_order_reveals_duplicate_charge(sandbox_target: str) -> None:
    out = _call(_ctx(sandbox_target), "lookup_order", order_id="O-5004")
    assert out["duplicate_charge"] == {"detected": True, "charges": 2, "overcharge_usd": 89.0}
    assert out["charged_total_usd"] == 178.0
    assert out["refunded_total_usd"] == 0.0
    assert out["refundable_usd"] == 89.0


def test_lookup_order_single_charge_not_flagged(sandbox_target: str) -> None:
    out = _call(_ctx(sandbox_target), "lookup_order", order_id="O-5003")
    assert out["duplicate_charge"]["detected"] is False
    assert out["status"] == "shipped"
    assert "transit" in out["notes"]


def test_lookup_order_unknown_raises_tool_error(sandbox_target: str) -> None:
    with pytest.raises(ToolError, match="unknown order O-0000"):
        _call(_ctx(sandbox_target), "lookup_order", order_id="O-0000")


def test_list_orders_returns_customer_orders(sandbox_target: str) -> None:
    out = _call(_ctx(sandbox_target), "list_orders", customer_id="C-1001")
    assert [o["id"] for o in out["orders"]] == ["O-5001", "O-5002"]


def test_find_tickets_returns_customer_tickets(sandbox_target: str) -> None:
    out = _call(_ctx(sandbox_target), "find_tickets", customer_id="C-1003")
    assert [(t["id"], t["subject"]) for t in out["tickets"]] == [("T-9003", "Charged twice")]


def test_get_ticket_returns_ticket(sandbox_target: str) -> None:
    out = _call(_ctx(sandbox_target), "get_ticket", ticket_id="T-9001")
    assert (out["order_id"], out["status"], out["updates"]) == ("O-5002", "open", [])


def test_issue_refund_writes_row(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:refund-1")
    out = _call(ctx, "issue_refund", order_id="O-5004", amount_usd=89.0, reason="duplicate")
    assert out["replayed"] is False
    assert out["id"].startswith("R-") and len(out["id"]) == 10
    rows = _rows(ctx, "SELECT order_id, amount_usd, reason, idempotency_key FROM refunds")
    assert [tuple(r) for r in rows] == [("O-5004", 89.0, "duplicate", "t:refund-1")]
    after = _call(ctx, "lookup_order", order_id="O-5004")
    assert (after["refunded_total_usd"], after["refundable_usd"]) == (89.0, 0.0)


def test_issue_refund_same_key_replays(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:refund-dup")
    first = _call(ctx, "issue_refund", order_id="O-5001", amount_usd=10.0, reason="scratched")
    second = _call(ctx, "issue_refund", order_id="O-5001", amount_usd=10.0, reason="scratched")
    assert second["replayed"] is True
    assert {**second, "replayed": False} == first
    assert len(_rows(ctx, "SELECT id FROM refunds")) == 1


def test_issue_refund_over_remaining_raises_and_writes_nothing(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:a")
    _call(ctx, "issue_refund", order_id="O-5001", amount_usd=20.0, reason="partial")
    later = demo_context(sandbox_db(ctx), "t:b")
    with pytest.raises(ToolError, match=r"exceeds the 4\.00 USD left"):
        _call(later, "issue_refund", order_id="O-5001", amount_usd=5.0, reason="more")
    assert len(_rows(ctx, "SELECT id FROM refunds")) == 1


def test_issue_refund_over_order_amount_raises(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target)
    with pytest.raises(ToolError, match="exceeds"):
        _call(ctx, "issue_refund", order_id="O-5001", amount_usd=24.01, reason="too much")
    assert _rows(ctx, "SELECT id FROM refunds") == []


def test_issue_refund_unknown_order_raises(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target)
    with pytest.raises(ToolError, match="unknown order"):
        _call(ctx, "issue_refund", order_id="O-1234", amount_usd=1.0, reason="nope")
    assert _rows(ctx, "SELECT id FROM refunds") == []


@pytest.mark.parametrize(
    "args",
    [
        {"order_id": "O-5001", "amount_usd": -5, "reason": "negative"},
        {"order_id": "O-5001", "amount_usd": 0, "reason": "zero"},
        {"order_id": "O-5001", "amount_usd": 1.234, "reason": "sub-cent"},
        {"order_id": "5001", "amount_usd": 1, "reason": "bad id"},
        {"order_id": "O-5001", "amount_usd": 1},
        {"order_id": "O-5001", "amount_usd": 1, "reason": "ok", "extra": True},
    ],
)
def test_issue_refund_invalid_args_raise_validation_error(args: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        get_tool("issue_refund").validate(args)


def test_issue_refund_requires_idempotency_key(sandbox_target: str) -> None:
    with pytest.raises(ToolError, match="idempotency key"):
        _call(
            _ctx(sandbox_target, key=" "), "issue_refund", order_id="O-5001", amount_usd=1,
            reason="oops",
        )


def test_send_email_writes_outbox_row(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:mail")
    out = _call(ctx, "send_email", customer_id="C-1003", subject="Refund", body="Sorry!")
    assert (out["to_email"], out["replayed"]) == ("alan@example.com", False)
    rows = _rows(ctx, "SELECT customer_id, to_email, subject, body FROM outbox")
    assert [tuple(r) for r in rows] == [("C-1003", "alan@example.com", "Refund", "Sorry!")]


def test_send_email_same_key_replays(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:mail")
    _call(ctx, "send_email", customer_id="C-1001", subject="Hi", body="One")
    again = _call(ctx, "send_email", customer_id="C-1001", subject="Hi", body="One")
    assert again["replayed"] is True
    assert len(_rows(ctx, "SELECT id FROM outbox")) == 1


def test_send_email_unknown_customer_raises(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target)
    with pytest.raises(ToolError, match="unknown customer"):
        _call(ctx, "send_email", customer_id="C-4242", subject="Hi", body="x")
    assert _rows(ctx, "SELECT id FROM outbox") == []


def test_send_email_empty_body_raises_validation_error() -> None:
    with pytest.raises(ValidationError):
        get_tool("send_email").validate({"customer_id": "C-1001", "subject": "Hi", "body": ""})


def test_update_ticket_sets_status_and_appends_note(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:u1")
    _call(ctx, "update_ticket", ticket_id="T-9003", status="pending", note="Refund issued.")
    second = demo_context(sandbox_db(ctx), "t:u2")
    out = _call(second, "update_ticket", ticket_id="T-9003", status="closed", note="Confirmed.")
    assert out["ticket"]["status"] == "closed"
    row = _rows(ctx, "SELECT status, notes FROM tickets WHERE id = 'T-9003'")[0]
    assert row["status"] == "closed"
    assert row["notes"].count("\n") == 1
    assert "Refund issued." in row["notes"] and "Confirmed." in row["notes"]
    assert len(_call(ctx, "get_ticket", ticket_id="T-9003")["updates"]) == 2


def test_update_ticket_same_key_replays(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:u")
    _call(ctx, "update_ticket", ticket_id="T-9002", status="pending", note="Checking carrier.")
    again = _call(
        ctx, "update_ticket", ticket_id="T-9002", status="pending", note="Checking carrier."
    )
    assert again["replayed"] is True
    notes = _rows(ctx, "SELECT notes FROM tickets WHERE id = 'T-9002'")[0]["notes"]
    assert notes.count("Checking carrier.") == 1
    assert len(_rows(ctx, "SELECT id FROM ticket_updates")) == 1


def test_update_ticket_bad_status_raises_validation_error() -> None:
    with pytest.raises(ValidationError):
        get_tool("update_ticket").validate(
            {"ticket_id": "T-9001", "status": "escalated", "note": "x"}
        )


def test_issue_refund_concurrent_same_key_writes_once(sandbox_target: str) -> None:
    ctx = _ctx(sandbox_target, key="t:race")
    with ThreadPoolExecutor(max_workers=8) as pool:
        outs = list(
            pool.map(
                lambda _: _call(
                    ctx, "issue_refund", order_id="O-5002", amount_usd=50.0, reason="broken"
                ),
                range(8),
            )
        )
    assert sorted(o["replayed"] for o in outs) == [False] + [True] * 7
    assert len(_rows(ctx, "SELECT id FROM refunds")) == 1
