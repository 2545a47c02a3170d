"""A run's pauses: each pending interrupt becomes an approval row and its
``approval_requested`` event, with what an approver needs to decide it."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.runs.events import RunEvents
from app.storage.store import RunRow, Store
from graphs.approval import approval_id


@dataclass(frozen=True)
class Interrupt:
    """A pending pause: LangGraph's interrupt id and its HumanInterrupt-shaped value."""

    id: str
    value: dict[str, Any]


def record_pause(
    store: Store,
    run: RunRow,
    pending: Sequence[Interrupt],
    values: Mapping[str, Any],
    cost_usd: float,
    events: RunEvents,
    ttl_s: float,
) -> None:
    """One approval row (and ``approval_requested`` event) per new pending interrupt;
    ``ttl_s`` when the interrupt names no expiry of its own."""
    now = time.time()
    for p in pending:
        v = p.value
        req = v.get("action_request") or {}
        ttl = v.get("expires_in_s") or ttl_s
        row = {
            "id": str(v.get("approval_id") or p.id),
            "interrupt_id": p.id,
            "thread_id": run.thread_id,
            "run_id": run.id,
            "tenant": run.tenant,
            "requester": run.created_by,
            "kind": str(v.get("kind") or "tool"),
            "action": str(req.get("action") or ""),
            "args": req.get("args") or {},
            "args_sha256": str(v.get("args_sha256") or ""),
            "agent": v.get("agent"),
            "rule": v.get("policy_rule"),
            "approver_group": v.get("approver_group"),
            "risk": v.get("risk"),
            "description": v.get("description"),
            "context": approval_context(run, v, values, cost_usd),
            "status": "pending",
            "created_at": now,
            "expires_at": now + float(ttl),
        }
        event = {
            "interrupt_id": p.id,
            "approval_id": row["id"],
            "kind": row["kind"],
            "action": row["action"],
            "args": row["args"],
            "agent": row["agent"],
            "risk": row["risk"],
            "policy_rule": row["rule"],
            "approver_group": row["approver_group"],
            "args_sha256": row["args_sha256"],
            "requester": run.created_by,
            "description": row["description"],
            "expires_at": row["expires_at"],
        }
        seq = store.record_approval(row, event)
        held = store.get_approval(str(row["id"])) if seq is None else None
        if held is not None and held.interrupt_id != p.id:
            # The same call and arguments asked again by a new pause, while their
            # approval belongs to another interrupt (settled, or left by a pause the run
            # no longer waits on): a new approval, or this pause would wait on one whose
            # decision cannot reach it.
            row["id"] = event["approval_id"] = approval_id(run.thread_id, held.id, p.id)
            seq = store.record_approval(row, event)
        if seq is not None:
            events.notify(seq, "approval_requested", event)


def approval_context(
    run: RunRow, value: Mapping[str, Any], values: Mapping[str, Any], cost_usd: float
) -> dict[str, Any]:
    """What an approver sees besides the action: plan, ledger excerpt, rationale, cost."""
    progress = values.get("last_progress") or {}
    agent = value.get("agent")
    rationale = next(
        (
            f"{s.get('instruction', '')} ({s.get('reason', '')})"
            for s in progress.get("next_steps") or []
            if s.get("agent") == agent
        ),
        "",
    )
    results = [
        {"step_id": r["step_id"], "agent": r["agent"], "ok": r["ok"], "summary": r["summary"][:400]}
        for r in (values.get("results") or [])[-6:]
    ]
    return {
        "task": run.task,
        "team": run.team,
        "plan": values.get("ledger") or {},
        "ledger_excerpt": {
            "round": values.get("round", 0),
            "is_progress_being_made": progress.get("is_progress_being_made"),
            "next_steps": progress.get("next_steps") or [],
            "recent_results": results,
        },
        "rationale": rationale,
        "cost_usd": round(cost_usd, 6),
        "mode": run.metadata.get("mode", "live"),
    }
