"""The tasks the crash sweep drives, and what each must leave behind (its side effects)."""

from __future__ import annotations

from dataclasses import dataclass

from tests.e2e.mcp_project import TASK as CRM_TASK


@dataclass(frozen=True)
class Task:
    """One swept task: who runs it, who approves it, and the rows that are its effects."""

    id: str
    text: str
    team: str
    tenant: str
    group: str  # the approver group the policy rule names
    effects: tuple[str, ...]  # SQL on the sandbox (or the CRM's database): the side effects
    mcp: bool = False


SANDBOX = ("SELECT order_id, amount_usd FROM refunds ORDER BY 1",
           "SELECT customer_id, to_email, subject FROM outbox ORDER BY 1, 3",
           "SELECT id, status FROM tickets ORDER BY 1",
           "SELECT service, severity, status FROM incidents ORDER BY 1",
           "SELECT service, action FROM remediations ORDER BY 1, 2",
           "SELECT name, status, replicas FROM services ORDER BY 1",
           "SELECT ticket_id, status, note FROM ticket_updates ORDER BY 1, 2, 3",
           "SELECT message, status FROM incident_updates ORDER BY 1, 2")

TASKS = {t.id: t for t in (
    Task("refund", "Customer C-1001 says order O-5002 arrived broken; refund it and let them "
         "know", "support", "acme", "support-leads", SANDBOX),
    Task("scale", "payments-worker latency is above SLO; scale it out", "incident", "acme",
         "sre-oncall", SANDBOX),
    Task("status", "Customer C-1002 asks where order O-5003 is; reply with its shipping status",
         "support", "acme", "support-leads", SANDBOX),
    Task("crm", CRM_TASK, "desk", "default", "leads",
         ("SELECT customer_id, amount_usd, reason FROM credits"
          " WHERE idempotency_key LIKE ?",), mcp=True),
)}
