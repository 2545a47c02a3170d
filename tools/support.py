"""Customer-support tools: customers, orders, tickets, refunds and outgoing email."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.records import (
    find_by_key,
    keyed_lookup,
    keyed_result,
    new_id,
    reading,
    require_key,
    result,
    sandbox_db,
    stored,
    utc_now,
    writing,
)
from tools.sandbox import Connection
from tools.spec import Risk, SideEffect, ToolContext, ToolError, ToolSpec

CustomerId = Annotated[str, Field(pattern=r"^C-\d{4}$", description="Customer id, e.g. 'C-1001'.")]
OrderId = Annotated[str, Field(pattern=r"^O-\d{4}$", description="Order id, e.g. 'O-5001'.")]
TicketId = Annotated[str, Field(pattern=r"^T-\d{4}$", description="Ticket id, e.g. 'T-9001'.")]
TicketStatus = Literal["open", "pending", "closed"]

# Money is compared in cents so 0.1 + 0.2 style float noise never blocks a valid refund.
_CENT = 0.005


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CustomerArgs(_Args):
    customer_id: CustomerId


class OrderArgs(_Args):
    order_id: OrderId


class TicketArgs(_Args):
    ticket_id: TicketId


class RefundArgs(_Args):
    order_id: OrderId
    amount_usd: float = Field(
        gt=0, le=100_000, description="Amount to refund in USD, at most 2 decimals."
    )
    reason: str = Field(min_length=3, max_length=500, description="Why the refund is issued.")

    @field_validator("amount_usd")
    @classmethod
    def _cents(cls, v: float) -> float:
        if abs(round(v, 2) - v) > 1e-9:
            raise ValueError("amount_usd must have at most 2 decimal places")
        return round(v, 2)


class EmailArgs(_Args):
    customer_id: CustomerId
    subject: str = Field(min_length=1, max_length=200, description="Email subject line.")
    body: str = Field(min_length=1, max_length=5000, description="Plain-text email body.")


class UpdateTicketArgs(_Args):
    ticket_id: TicketId
    status: TicketStatus = Field(description="New ticket status: open, pending or closed.")
    note: str = Field(
        min_length=1, max_length=2000, description="Note appended to the ticket history."
    )


def _customer(conn: Connection, customer_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM customers WHERE id = ?", (customer_id,)).fetchone()
    if row is None:
        raise ToolError(f"unknown customer {customer_id}")
    return dict(row)


def _order(conn: Connection, order_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None:
        raise ToolError(f"unknown order {order_id}")
    return dict(row)


def _ticket(conn: Connection, ticket_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
    if row is None:
        raise ToolError(f"unknown ticket {ticket_id}")
    return dict(row)


def _refunded_total(conn: Connection, order_id: str) -> float:
    row = conn.execute(
        "SELECT COALESCE(SUM(amount_usd), 0) FROM refunds WHERE order_id = ?", (order_id,)
    ).fetchone()
    return round(float(row[0]), 2)


def lookup_customer(ctx: ToolContext, args: CustomerArgs) -> dict[str, Any]:
    """One customer's profile."""
    with reading(sandbox_db(ctx)) as conn:
        return _customer(conn, args.customer_id)


def lookup_order(ctx: ToolContext, args: OrderArgs) -> dict[str, Any]:
    """One order with its payments, duplicate-charge check and refunds so far."""
    with reading(sandbox_db(ctx)) as conn:
        order = _order(conn, args.order_id)
        payments = [
            dict(r)
            for r in conn.execute(
                "SELECT id, amount_usd, charged_at FROM payments WHERE order_id = ? ORDER BY id",
                (args.order_id,),
            )
        ]
        refunds = [
            dict(r)
            for r in conn.execute(
                "SELECT id, amount_usd, reason, created_at FROM refunds "
                "WHERE order_id = ? ORDER BY created_at, id",
                (args.order_id,),
            )
        ]
        refunded = _refunded_total(conn, args.order_id)
    charged = round(sum(float(p["amount_usd"]) for p in payments), 2)
    overcharge = round(charged - float(order["amount_usd"]), 2)
    order["payments"] = payments
    order["charged_total_usd"] = charged
    order["duplicate_charge"] = {
        "detected": len(payments) > 1 and overcharge > _CENT,
        "charges": len(payments),
        "overcharge_usd": max(overcharge, 0.0),
    }
    order["refunds"] = refunds
    order["refunded_total_usd"] = refunded
    order["refundable_usd"] = round(float(order["amount_usd"]) - refunded, 2)
    return order


def list_orders(ctx: ToolContext, args: CustomerArgs) -> dict[str, Any]:
    """All orders of one customer."""
    with reading(sandbox_db(ctx)) as conn:
        _customer(conn, args.customer_id)
        rows = conn.execute(
            "SELECT id, item, amount_usd, status, shipped_at FROM orders "
            "WHERE customer_id = ? ORDER BY id",
            (args.customer_id,),
        ).fetchall()
    return {"customer_id": args.customer_id, "orders": [dict(r) for r in rows]}


def get_ticket(ctx: ToolContext, args: TicketArgs) -> dict[str, Any]:
    """One ticket with its update history."""
    with reading(sandbox_db(ctx)) as conn:
        ticket = _ticket(conn, args.ticket_id)
        updates = conn.execute(
            "SELECT id, status, note, created_at FROM ticket_updates "
            "WHERE ticket_id = ? ORDER BY created_at, id",
            (args.ticket_id,),
        ).fetchall()
    ticket["updates"] = [dict(r) for r in updates]
    return ticket


def find_tickets(ctx: ToolContext, args: CustomerArgs) -> dict[str, Any]:
    """All tickets of one customer."""
    with reading(sandbox_db(ctx)) as conn:
        _customer(conn, args.customer_id)
        rows = conn.execute(
            "SELECT id, order_id, subject, status FROM tickets WHERE customer_id = ? ORDER BY id",
            (args.customer_id,),
        ).fetchall()
    return {"customer_id": args.customer_id, "tickets": [dict(r) for r in rows]}


def issue_refund(ctx: ToolContext, args: RefundArgs) -> dict[str, Any]:
    """Refund part or all of an order, never more than what is left to refund."""
    key = require_key(ctx.idempotency_key)
    # Re-checked here because callers may build args without validation.
    if args.amount_usd <= 0:
        raise ToolError("refund amount must be positive")
    with writing(sandbox_db(ctx)) as conn:
        prior = find_by_key(conn, "refunds", key)
        if prior is not None:
            return result(prior, replayed=True)
        order = _order(conn, args.order_id)
        refunded = _refunded_total(conn, args.order_id)
        remaining = round(float(order["amount_usd"]) - refunded, 2)
        if args.amount_usd > remaining + _CENT:
            raise ToolError(
                f"refund of {args.amount_usd:.2f} USD exceeds the {remaining:.2f} USD left to "
                f"refund on {args.order_id} (order {float(order['amount_usd']):.2f}, "
                f"already refunded {refunded:.2f})"
            )
        refund_id = new_id(conn, "refunds", "R", key)
        conn.execute(
            "INSERT INTO refunds (id, order_id, amount_usd, reason, created_at, idempotency_key) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (refund_id, args.order_id, args.amount_usd, args.reason, utc_now(), key),
        )
        row = stored(conn, "refunds", key)
    return result(row, replayed=False)


def send_email(ctx: ToolContext, args: EmailArgs) -> dict[str, Any]:
    """Queue an email to a customer's address on file."""
    key = require_key(ctx.idempotency_key)
    with writing(sandbox_db(ctx)) as conn:
        prior = find_by_key(conn, "outbox", key)
        if prior is not None:
            return result(prior, replayed=True)
        customer = _customer(conn, args.customer_id)
        message_id = new_id(conn, "outbox", "M", key)
        conn.execute(
            "INSERT INTO outbox (id, customer_id, to_email, subject, body, created_at, "
            "idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                args.customer_id,
                customer["email"],
                args.subject,
                args.body,
                utc_now(),
                key,
            ),
        )
        row = stored(conn, "outbox", key)
    return result(row, replayed=False)


def update_ticket(ctx: ToolContext, args: UpdateTicketArgs) -> dict[str, Any]:
    """Set a ticket's status and append a note to its history."""
    key = require_key(ctx.idempotency_key)
    with writing(sandbox_db(ctx)) as conn:
        prior = find_by_key(conn, "ticket_updates", key)
        if prior is None:
            ticket = _ticket(conn, args.ticket_id)
            now = utc_now()
            line = f"[{now}] ({args.status}) {args.note}"
            notes = f"{ticket['notes']}\n{line}" if ticket["notes"] else line
            conn.execute(
                "UPDATE tickets SET status = ?, notes = ? WHERE id = ?",
                (args.status, notes, args.ticket_id),
            )
            conn.execute(
                "INSERT INTO ticket_updates (id, ticket_id, status, note, created_at, "
                "idempotency_key) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    new_id(conn, "ticket_updates", "TU", key),
                    args.ticket_id,
                    args.status,
                    args.note,
                    now,
                    key,
                ),
            )
        return keyed_result(conn, stored(conn, "ticket_updates", key), _ticket_now,
                            replayed=prior is not None)


def _ticket_now(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """The ticket a ticket update changed, as it stands."""
    return {"ticket": _ticket(conn, str(row["ticket_id"]))}


LOOKUP_CUSTOMER = ToolSpec(
    name="lookup_customer",
    description="Look up a customer's name, email and tier by customer id.",
    args_model=CustomerArgs,
    side_effect=SideEffect.READ,
    risk=Risk.LOW,
    func=lookup_customer,
)
LOOKUP_ORDER = ToolSpec(
    name="lookup_order",
    description=(
        "Look up an order: item, amount, status, payments (including any duplicate charge), "
        "refunds so far and the amount still refundable."
    ),
    args_model=OrderArgs,
    side_effect=SideEffect.READ,
    risk=Risk.LOW,
    func=lookup_order,
)
LIST_ORDERS = ToolSpec(
    name="list_orders",
    description="List all orders of a customer.",
    args_model=CustomerArgs,
    side_effect=SideEffect.READ,
    risk=Risk.LOW,
    func=list_orders,
)
GET_TICKET = ToolSpec(
    name="get_ticket",
    description="Get a support ticket with its status, notes and update history.",
    args_model=TicketArgs,
    side_effect=SideEffect.READ,
    risk=Risk.LOW,
    func=get_ticket,
    untrusted_output=True,  # subjects and notes are the customer's own words
)
FIND_TICKETS = ToolSpec(
    name="find_tickets",
    description="List all support tickets of a customer.",
    args_model=CustomerArgs,
    side_effect=SideEffect.READ,
    risk=Risk.LOW,
    func=find_tickets,
    untrusted_output=True,  # ticket subjects are the customer's own words
)
ISSUE_REFUND = ToolSpec(
    name="issue_refund",
    description=(
        "Refund money on an order. Fails if the amount exceeds the order amount minus "
        "earlier refunds. Moves real money: check the order first."
    ),
    args_model=RefundArgs,
    side_effect=SideEffect.WRITE,
    risk=Risk.HIGH,
    func=issue_refund,
    reconcile=keyed_lookup("refunds"),
)
SEND_EMAIL = ToolSpec(
    name="send_email",
    description="Send an email to a customer at the address on file.",
    args_model=EmailArgs,
    side_effect=SideEffect.WRITE,
    risk=Risk.MEDIUM,
    func=send_email,
    reconcile=keyed_lookup("outbox"),
)
UPDATE_TICKET = ToolSpec(
    name="update_ticket",
    description="Set a support ticket's status (open, pending, closed) and append a note.",
    args_model=UpdateTicketArgs,
    side_effect=SideEffect.WRITE,
    risk=Risk.LOW,
    func=update_ticket,
    reconcile=keyed_lookup("ticket_updates", _ticket_now),
)

SUPPORT_TOOLS: tuple[ToolSpec, ...] = (
    LOOKUP_CUSTOMER,
    LOOKUP_ORDER,
    LIST_ORDERS,
    GET_TICKET,
    FIND_TICKETS,
    ISSUE_REFUND,
    SEND_EMAIL,
    UPDATE_TICKET,
)
