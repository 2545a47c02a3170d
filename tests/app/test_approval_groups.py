"""Approver groups, admin override, expiry at decision time and strict edited arguments,
through the approvals service on the bundled policy (the demo refund of $189 asks
``support-leads`` under rule ``refunds-over-50``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.api.auth import Principal
from app.config.settings import Settings
from app.errors import Conflict, Forbidden, InvalidRequest
from app.governance.resumers import InlineResume
from app.runs.runner import RunResult
from app.services import Services, open_services

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
LEAD = Principal("lena", "acme", frozenset({"approver"}), groups=frozenset({"support-leads"}))
FINANCE = Principal("fin", "acme", frozenset({"approver"}), groups=frozenset({"finance-leads"}))
PLAIN = Principal("pat", "acme", frozenset({"approver"}))
ROOT = Principal("root", "acme", frozenset({"admin"}))


def with_override(settings: Settings, rule: str) -> Settings:
    rules = [r.model_copy(update={"admin_override": r.name == rule})
             for r in settings.policy.rules]
    return settings.model_copy(update={
        "policy": settings.policy.model_copy(update={"rules": rules})})


@pytest.fixture
async def svc(policy_settings: Settings) -> AsyncIterator[Services]:
    async with open_services(policy_settings) as s:
        yield s


async def paused(s: Services) -> RunResult:
    result = await s.runner.start(TASK, "support", tenant="acme", created_by="alice")
    assert result.status == "interrupted"
    return result


def refunds(rows: Any) -> list[dict[str, Any]]:
    return list(rows("SELECT order_id, amount_usd FROM refunds"))


def refusals(s: Services) -> list[dict[str, Any]]:
    return [e for e in s.store.audit_entries("acme") if e["type"] == "approval_refused"]


async def test_approval_groups_an_approver_outside_the_group_is_refused_and_audited(
        svc: Services, sandbox_rows: Any) -> None:
    run = await paused(svc)
    approval_id = run.interrupts[0].value["approval_id"]
    resumer = InlineResume(svc.runner)
    for outsider in (PLAIN, FINANCE, ROOT):
        with pytest.raises(Forbidden, match="needs approver group support-leads"):
            await svc.approvals.decide(outsider, approval_id, "approve", resumer)

    assert resumer.result is None and refunds(sandbox_rows) == []
    assert svc.approvals.get(LEAD, approval_id).status == "pending"
    logged = refusals(svc)
    assert [e["actor"] for e in logged] == ["pat", "fin", "root"]
    assert logged[0]["data"]["approver_group"] == "support-leads"
    assert logged[0]["run_id"] == run.run_id
    assert svc.store.verify_audit("acme").ok

    done = await svc.approvals.decide(LEAD, approval_id, "approve", resumer)
    assert done.decided_by == "lena"
    assert refunds(sandbox_rows) == [{"order_id": "O-5002", "amount_usd": 189.0}]


async def test_approval_groups_refusal_reason_is_what_the_inbox_shows(svc: Services) -> None:
    run = await paused(svc)
    (row,) = svc.approvals.find(PLAIN, "pending")
    assert row.id == run.interrupts[0].value["approval_id"]
    assert svc.approvals.refusal(LEAD, row) is None
    assert "support-leads" in (svc.approvals.refusal(PLAIN, row) or "")
    assert svc.approvals.refusal(Principal("alice", "acme", frozenset({"approver"}),
                                           groups=frozenset({"support-leads"})), row) == (
        "the requester of a run may not decide its approvals")


async def test_approval_groups_admin_decides_only_with_admin_override(
        policy_settings: Settings, sandbox_rows: Any) -> None:
    async with open_services(with_override(policy_settings, "refunds-over-50")) as s:
        run = await paused(s)
        resumer = InlineResume(s.runner)
        with pytest.raises(Forbidden, match="needs approver group"):
            # The override is for admins: an approver outside the group stays refused.
            await s.approvals.decide(PLAIN, run.interrupts[0].value["approval_id"],
                                     "approve", resumer)
        await s.approvals.decide(ROOT, run.interrupts[0].value["approval_id"], "approve",
                                 resumer)
    assert resumer.result is not None and resumer.result.status == "success"
    assert refunds(sandbox_rows) == [{"order_id": "O-5002", "amount_usd": 189.0}]


async def test_approval_groups_edit_into_another_rule_needs_that_rules_group(
        svc: Services) -> None:
    run = await paused(svc)
    resumer = InlineResume(svc.runner)
    await svc.approvals.decide(LEAD, run.interrupts[0].value["approval_id"], "edit", resumer,
                               args={"order_id": "O-5002", "amount_usd": 600.0,
                                     "reason": "goodwill"})
    (again,) = svc.approvals.find(LEAD, "pending")
    assert again.approver_group == "finance-leads"
    with pytest.raises(Forbidden, match="finance-leads"):
        await svc.approvals.decide(LEAD, again.id, "approve", resumer)
    done = await svc.approvals.decide(FINANCE, again.id, "approve", resumer)
    assert (done.status, done.decided_by) == ("decided", "fin")


async def test_approval_expired_is_refused_before_the_sweeper_runs(
        svc: Services, sandbox_rows: Any) -> None:
    run = await paused(svc)
    (row,) = svc.approvals.find(LEAD, "pending")
    assert row.expires_at is not None
    svc.approvals.clock = lambda: (row.expires_at or 0) + 1  # the sweeper has not run
    resumer = InlineResume(svc.runner)
    with pytest.raises(Conflict, match="expired"):
        await svc.approvals.decide(LEAD, row.id, "approve", resumer)
    with pytest.raises(Conflict, match="expired"):
        await svc.approvals.decide_resume(LEAD, run.thread_id, {"decision": "approve"},
                                          resumer)
    assert resumer.result is None and refunds(sandbox_rows) == []
    assert svc.approvals.get(LEAD, row.id).status == "pending"  # the sweeper settles it


@pytest.mark.parametrize(("amount", "why"), [
    (True, "a boolean is not a number"),
    ("189", "a string is not a number"),
    ("1e5", "a string is not a number"),
    (None, "null is not a number"),
])
async def test_approval_edit_args_are_validated_strictly(
        svc: Services, sandbox_rows: Any, amount: Any, why: str) -> None:
    run = await paused(svc)
    resumer = InlineResume(svc.runner)
    with pytest.raises(InvalidRequest) as bad:
        await svc.approvals.decide(LEAD, run.interrupts[0].value["approval_id"], "edit",
                                   resumer, args={"order_id": "O-5002", "amount_usd": amount,
                                                  "reason": "x"})
    assert bad.value.field == "args.amount_usd", why
    assert resumer.result is None and refunds(sandbox_rows) == []


async def test_approval_edit_args_accept_an_integer_amount(svc: Services,
                                                           sandbox_rows: Any) -> None:
    run = await paused(svc)
    resumer = InlineResume(svc.runner)
    await svc.approvals.decide(LEAD, run.interrupts[0].value["approval_id"], "edit", resumer,
                               args={"order_id": "O-5002", "amount_usd": 120,
                                     "reason": "partial"})
    assert refunds(sandbox_rows) == [{"order_id": "O-5002", "amount_usd": 120.0}]
