"""The approvals API the inbox uses: list, detail with context, decide (tenant-scoped).

Reads run off the event loop (:meth:`Api.off_loop`); a decision's own database work runs off
it inside the approvals service (app.governance.approvals).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from app.api.auth import Approver, Principal
from app.api.deps import ApiDep
from app.storage.store import ApprovalRow

router = APIRouter(tags=["approvals"])
ApprovalId = Annotated[str, Path(max_length=128)]


class DecisionIn(BaseModel):
    """``POST /v1/approvals/{id}/decision``."""

    decision: Literal["approve", "reject", "edit", "respond"]
    args: dict[str, Any] | None = None
    message: str = Field(default="", max_length=4000)


def approval_json(row: ApprovalRow, now: float | None = None,
                  refusal: str | None = None) -> dict[str, Any]:
    """An approval as the API returns it, with its age in seconds and whether the caller
    may decide it (``may_decide``; ``refusal`` says why not)."""
    now = time.time() if now is None else now
    return {**row.as_json(), "age_s": round(now - row.created_at, 1),
            "may_decide": refusal is None, "refusal": refusal}


def _for(api: ApiDep, principal: Principal, row: ApprovalRow) -> dict[str, Any]:
    if row.status != "pending":
        return approval_json(row, refusal=f"approval {row.id} is {row.status}")
    return approval_json(row, refusal=api.services.approvals.refusal(principal, row))


@router.get("/v1/approvals")
async def list_approvals(
        api: ApiDep, principal: Approver,
        status: Annotated[Literal["pending", "decided", "expired"] | None, Query()] = None,
) -> list[dict[str, Any]]:
    """The tenant's approvals, newest first, optionally by status."""
    def listed() -> list[dict[str, Any]]:
        return [_for(api, principal, r) for r in api.services.approvals.find(principal, status)]

    return await api.off_loop(listed)


@router.get("/v1/approvals/{approval_id}")
async def get_approval(approval_id: ApprovalId, api: ApiDep,
                       principal: Approver) -> dict[str, Any]:
    """One approval: action, arguments, agent, rule, plan, ledger excerpt, cost so far."""
    return await api.off_loop(
        lambda: _for(api, principal, api.services.approvals.get(principal, approval_id)))


@router.post("/v1/approvals/{approval_id}/decision")
async def decide(approval_id: ApprovalId, body: DecisionIn, api: ApiDep,
                 principal: Approver) -> dict[str, Any]:
    """Approve, reject, edit or respond; the run resumes in the background."""
    row = await api.services.approvals.decide(principal, approval_id, body.decision,
                                              api.manager, args=body.args,
                                              message=body.message)
    return _for(api, principal, row)  # no database read: the row came back with the decision
