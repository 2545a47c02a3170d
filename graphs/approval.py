"""Pausing a tool call for a human: the interrupt value and the decisions it accepts.

The value follows Agent Inbox's HumanInterrupt shape plus Foreman's fields. Resume values
are accepted in three spellings (Agent Inbox responses, LangChain v1 ``decisions`` and
Foreman's own ``{decision, args, message}``) and normalised here, in one place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from langgraph.types import interrupt

from graphs.ports import BUDGET_ACTION, GateDecision
from graphs.state import PendingCall
from tools.spec import ToolSpec, args_sha256

_KINDS = {
    "accept": "approve", "approve": "approve",
    "edit": "edit",
    "response": "respond", "respond": "respond",
    "ignore": "reject", "reject": "reject",
}


@dataclass(frozen=True)
class Decision:
    """A human decision in normal form."""

    kind: str  # approve | reject | edit | respond
    args: dict[str, Any] | None = None
    message: str = ""


@dataclass(frozen=True)
class ApprovalOutcome:
    """What the gate does next: run, refuse with a message, or re-check edited args."""

    refusal: str | None = None
    edited_args: dict[str, Any] | None = None


def approval_id(thread_id: str, call_id: str, args_hash: str) -> str:
    """Deterministic approval id, bound to the exact arguments it approves."""
    return hashlib.sha256(f"{thread_id}:{call_id}:{args_hash}".encode()).hexdigest()[:20]


def interrupt_value(call: PendingCall, spec: ToolSpec, args: dict[str, Any],
                    decision: GateDecision, agent: str, thread_id: str) -> dict[str, Any]:
    """The HumanInterrupt-shaped payload an inbox shows."""
    digest = args_sha256(args)
    return {
        "action_request": {"action": spec.name, "args": args},
        "config": {"allow_accept": True, "allow_edit": True, "allow_respond": True,
                   "allow_ignore": True},
        "description": f"{agent} wants to call {spec.name} ({spec.description}). "
                       f"Policy rule {decision.rule}: {decision.reason}",
        "approval_id": approval_id(thread_id, call["id"], digest),
        "agent": agent,
        "risk": spec.risk.value,
        "policy_rule": decision.rule,
        "approver_group": decision.approver_group,
        "args_sha256": digest,
        "tool_call_id": call["id"],
        "kind": "tool",
        "expires_in_s": decision.expires_in_s,
    }


def parse_decision(value: Any) -> Decision:
    """Normalise any accepted resume spelling; unknown shapes count as a rejection."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, dict) and isinstance(value.get("decisions"), list) and value["decisions"]:
        value = value["decisions"][0]
    if not isinstance(value, dict):
        return Decision("reject", message="unreadable decision")
    kind = _KINDS.get(str(value.get("type") or value.get("decision") or "").lower())
    if kind is None:
        return Decision("reject", message="unknown decision type")
    message = str(value.get("message") or value.get("reason") or "")
    raw_args = value.get("args")
    if kind == "respond" and isinstance(raw_args, str):
        return Decision("respond", message=raw_args)
    if kind == "edit":
        edited = value.get("edited_action") or raw_args
        if isinstance(edited, dict) and isinstance(edited.get("args"), dict):
            edited = edited["args"]
        if not isinstance(edited, dict):
            return Decision("reject", message="edit without arguments")
        return Decision("edit", args=edited, message=message)
    return Decision(kind, message=message)


def ask_approval(call: PendingCall, spec: ToolSpec, args: dict[str, Any],
                 decision: GateDecision, agent: str, thread_id: str) -> ApprovalOutcome:
    """Pause for a human and translate the answer. Must be the only interrupt in its node."""
    answer = parse_decision(
        interrupt(interrupt_value(call, spec, args, decision, agent, thread_id))
    )
    if answer.kind == "approve":
        return ApprovalOutcome()
    if answer.kind == "edit":
        return ApprovalOutcome(edited_args=answer.args)
    if answer.kind == "respond":
        return ApprovalOutcome(refusal=f"not executed; the approver responded: {answer.message}")
    return ApprovalOutcome(
        refusal=f"rejected by the approver: {answer.message or 'no reason given'}"
    )


def plan_interrupt_value(ledger: dict[str, Any], thread_id: str, revision: int) -> dict[str, Any]:
    """The HumanInterrupt-shaped payload for reviewing a plan."""
    digest = args_sha256(ledger)
    return {
        "action_request": {"action": "review_plan", "args": {"ledger": ledger}},
        "config": {"allow_accept": True, "allow_edit": True, "allow_respond": True,
                   "allow_ignore": True},
        "description": "Review the manager's plan before any agent acts: approve it, edit it, "
                       "or respond with what to change.",
        "approval_id": approval_id(thread_id, f"plan-{revision}", digest),
        "kind": "plan",
        "agent": "manager",
        "risk": "low",
        "policy_rule": "plan_review",
        "approver_group": None,
        "args_sha256": digest,
    }


def review_plan(ledger: dict[str, Any], thread_id: str, revision: int) -> Decision:
    """Pause for a plan review. Must be the only interrupt in its node."""
    return parse_decision(interrupt(plan_interrupt_value(ledger, thread_id, revision)))


def budget_interrupt_value(args: dict[str, Any], decision: GateDecision,
                           thread_id: str, number: int) -> dict[str, Any]:
    """The HumanInterrupt-shaped payload for extending a run's budget."""
    digest = args_sha256(args)
    return {
        "action_request": {"action": BUDGET_ACTION, "args": args},
        "config": {"allow_accept": True, "allow_edit": False, "allow_respond": False,
                   "allow_ignore": True},
        "description": f"The run is out of budget ({args.get('reason', '')}). Approve with "
                       "args.amount_usd to extend it, or reject to end it with a best-effort "
                       f"answer. Policy rule {decision.rule}: {decision.reason}",
        "approval_id": approval_id(thread_id, f"budget-{number}", digest),
        "kind": "budget",
        "agent": "manager",
        "risk": "medium",
        "policy_rule": decision.rule,
        "approver_group": decision.approver_group,
        "args_sha256": digest,
        "expires_in_s": decision.expires_in_s,
    }


def ask_budget(args: dict[str, Any], decision: GateDecision, thread_id: str,
               number: int) -> Decision:
    """Pause for a budget extension. Must be the only interrupt in its node."""
    return parse_decision(interrupt(budget_interrupt_value(args, decision, thread_id, number)))
