"""The approvals service end to end, offline, in process: the bundled policy pauses the demo
refund; approve / reject / edit / respond through the service; RBAC, single use, stale
decisions, expiry, the approval row's context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.api.auth import Principal
from app.config.settings import Settings
from app.errors import Conflict, Forbidden, InvalidRequest, NotFound
from app.governance.resumers import InlineResume
from app.runs.runner import RunResult
from app.services import Services, open_services

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
ALICE = Principal("alice", "acme", frozenset({"requester"}))
BOB = Principal("bob", "acme", frozenset({"approver"}),
                groups=frozenset({"support-leads", "budget-owners"}))
CAROL = Principal("carol", "acme", frozenset({"approver"}), groups=frozenset({"support-leads"}))
ROOT = Principal("root", "acme", frozenset({"admin"}))
EVE = Principal("eve", "globex", frozenset({"requester", "approver"}))


@pytest.fixture
async def svc(policy_settings: Settings) -> AsyncIterator[Services]:
    async with open_services(policy_settings) as s:
        yield s


async def paused(s: Services, requester: str = "alice") -> RunResult:
    result = await s.runner.start(TASK, "support", tenant="acme", created_by=requester)
    assert result.status == "interrupted"
    return result


def refunds(rows: Any) -> list[dict[str, Any]]:
    return list(rows("SELECT order_id, amount_usd, reason FROM refunds"))


async def test_approvals_pause_records_a_row_with_context_and_no_refund(
        svc: Services, sandbox_rows: Any) -> None:
    run = await paused(svc)
    (row,) = svc.approvals.find(BOB, "pending")

    assert refunds(sandbox_rows) == []
    assert row.id == run.interrupts[0].value["approval_id"]
    assert (row.kind, row.action, row.rule, row.approver_group) == (
        "tool", "issue_refund", "refunds-over-50", "support-leads")
    assert row.requester == "alice" and row.tenant == "acme" and row.agent == "billing"
    assert row.args["amount_usd"] == 189.0 and row.expires_at is not None
    assert row.expires_at - row.created_at == pytest.approx(86400)
    ctx = row.context
    assert len(ctx["plan"]["plan"]) == 4 and ctx["cost_usd"] > 0
    assert "Refund order O-5002" in ctx["rationale"]
    assert ctx["ledger_excerpt"]["recent_results"][0]["agent"] == "researcher"


async def test_approvals_approve_refunds_exactly_once(svc: Services, sandbox_rows: Any) -> None:
    run = await paused(svc)
    resumer = InlineResume(svc.runner)
    row = await svc.approvals.decide(BOB, run.interrupts[0].value["approval_id"], "approve",
                                     resumer)

    assert row.status == "decided" and row.decided_by == "bob" and row.decision == "approve"
    assert resumer.result is not None and resumer.result.status == "success"
    assert resumer.result.stop_reason == "satisfied"
    assert refunds(sandbox_rows) == [{"order_id": "O-5002", "amount_usd": 189.0,
                                      "reason": "Arrived broken (ticket T-9001)"}]
    # A second decision is refused; the run cannot be driven into a second refund.
    with pytest.raises(Conflict):
        await svc.approvals.decide(CAROL, row.id, "approve", resumer)
    assert len(refunds(sandbox_rows)) == 1


async def test_approvals_reject_leaves_no_refund_and_the_answer_says_why(
        svc: Services, sandbox_rows: Any) -> None:
    run = await paused(svc)
    resumer = InlineResume(svc.runner)
    await svc.approvals.decide(BOB, run.interrupts[0].value["approval_id"], "reject", resumer,
                               message="needs a photo of the damage first")

    done = resumer.result
    assert done is not None and done.status == "error" and done.stop_reason == "blocked"
    assert refunds(sandbox_rows) == []
    assert "needs a photo of the damage first" in (done.final_answer or "")


async def test_approvals_edit_refunds_the_edited_amount(svc: Services, sandbox_rows: Any) -> None:
    run = await paused(svc)
    resumer = InlineResume(svc.runner)
    await svc.approvals.decide(BOB, run.interrupts[0].value["approval_id"], "edit", resumer,
                               args={"order_id": "O-5002", "amount_usd": 120.0,
                                     "reason": "partial refund agreed"})

    assert resumer.result is not None and resumer.result.status == "success"
    assert refunds(sandbox_rows) == [{"order_id": "O-5002", "amount_usd": 120.0,
                                      "reason": "partial refund agreed"}]


async def test_approvals_edit_is_validated_and_the_policy_checked_again(
        svc: Services, sandbox_rows: Any) -> None:
    run = await paused(svc)
    approval_id = run.interrupts[0].value["approval_id"]
    resumer = InlineResume(svc.runner)
    with pytest.raises(InvalidRequest) as bad:
        await svc.approvals.decide(BOB, approval_id, "edit", resumer,
                                   args={"order_id": "O-5002", "amount_usd": -5, "reason": "x"})
    assert bad.value.field == "args.amount_usd"
    with pytest.raises(Forbidden, match="refunds-over-1000-denied"):
        await svc.approvals.decide(BOB, approval_id, "edit", resumer,
                                   args={"order_id": "O-5002", "amount_usd": 5000.0,
                                         "reason": "goodwill"})
    # Still pending after refused edits; an edit above the approver's limit asks again.
    await svc.approvals.decide(BOB, approval_id, "edit", resumer,
                               args={"order_id": "O-5002", "amount_usd": 600.0,
                                     "reason": "goodwill"})
    assert resumer.result is not None and resumer.result.status == "interrupted"
    (again,) = svc.approvals.find(BOB, "pending")
    assert again.rule == "refunds-over-500" and again.approver_group == "finance-leads"
    assert again.args["amount_usd"] == 600.0 and again.id != approval_id
    assert refunds(sandbox_rows) == []


async def test_approvals_respond_sends_guidance_to_the_agent(
        svc: Services, sandbox_rows: Any) -> None:
    run = await paused(svc)
    resumer = InlineResume(svc.runner)
    await svc.approvals.decide(BOB, run.interrupts[0].value["approval_id"], "respond", resumer,
                               message="offer store credit instead of a refund")

    refused = [e["data"] for e in svc.store.events(run.run_id)
               if e["type"] == "tool_result" and e["data"]["tool"] == "issue_refund"]
    assert "offer store credit instead of a refund" in refused[-1]["error"]
    reports = [e["data"]["summary"] for e in svc.store.events(run.run_id)
               if e["type"] == "agent_finished" and e["data"]["agent"] == "billing"]
    assert "offer store credit instead of a refund" in reports[-1]
    assert refunds(sandbox_rows) == []


async def test_approvals_respond_needs_a_message(svc: Services) -> None:
    run = await paused(svc)
    with pytest.raises(InvalidRequest) as err:
        await svc.approvals.decide(BOB, run.interrupts[0].value["approval_id"], "respond",
                                   InlineResume(svc.runner), message="  ")
    assert err.value.field == "message"


async def test_approvals_rbac_requester_tenant_and_role(svc: Services) -> None:
    run = await paused(svc)
    approval_id = run.interrupts[0].value["approval_id"]
    resumer = InlineResume(svc.runner)
    with pytest.raises(Forbidden, match="role approver"):
        await svc.approvals.decide(ALICE, approval_id, "approve", resumer)
    selfish = Principal("alice", "acme", frozenset({"approver"}))
    with pytest.raises(Forbidden, match="requester of a run"):
        await svc.approvals.decide(selfish, approval_id, "approve", resumer)
    with pytest.raises(NotFound):
        svc.approvals.get(EVE, approval_id)
    with pytest.raises(NotFound):
        await svc.approvals.decide(EVE, approval_id, "approve", resumer)
    assert svc.approvals.find(EVE) == []
    assert resumer.result is None


async def test_approvals_admin_self_approval_only_where_the_rule_allows(
        policy_settings: Settings) -> None:
    rules = [r.model_copy(update={"admin_may_self_approve": r.name == "refunds-over-50",
                                  "admin_override": r.name == "refunds-over-50"})
             for r in policy_settings.policy.rules]
    settings = policy_settings.model_copy(update={
        "policy": policy_settings.policy.model_copy(update={"rules": rules})})
    async with open_services(settings) as s:
        run = await paused(s, requester="root")
        resumer = InlineResume(s.runner)
        await s.approvals.decide(ROOT, run.interrupts[0].value["approval_id"], "approve",
                                 resumer)
    assert resumer.result is not None and resumer.result.status == "success"


async def test_approvals_stale_decision_is_a_conflict(svc: Services) -> None:
    run = await paused(svc)
    resumer = InlineResume(svc.runner)
    approval_id = run.interrupts[0].value["approval_id"]
    # The run was resumed behind the approvals' back (e.g. by an old client).
    await svc.runner.resume(run.thread_id, {run.interrupts[0].id: {"decision": "reject"}})
    with pytest.raises(Conflict, match="stale"):
        await svc.approvals.decide(BOB, approval_id, "approve", resumer)


async def test_approvals_expiry_rejects_and_the_answer_says_so(
        svc: Services, sandbox_rows: Any) -> None:
    run = await paused(svc)
    (row,) = svc.approvals.find(BOB, "pending")
    resumer = InlineResume(svc.runner)
    assert await svc.approvals.sweep(resumer, now=row.created_at + 60) == []
    expired = await svc.approvals.sweep(resumer, now=(row.expires_at or 0) + 1)

    assert expired == [row.id]
    after = svc.approvals.get(BOB, row.id)
    assert (after.status, after.decided_by) == ("expired", "system:expiry")
    assert after.decided_at == (row.expires_at or 0) + 1  # the sweeper's clock, not the wall's
    assert resumer.result is not None and resumer.result.stop_reason == "blocked"
    assert "expired" in (resumer.result.final_answer or "")
    assert refunds(sandbox_rows) == []
    decided = [e["data"] for e in svc.store.events(run.run_id)
               if e["type"] == "approval_decided"]
    assert decided[-1]["decision"] == "expired"
    with pytest.raises(Conflict, match="expired"):
        await svc.approvals.decide(BOB, row.id, "approve", resumer)
