"""The audit trail: a run's entries, and verification of the tenant's hash chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.auth import Approver
from app.api.deps import ApiDep
from app.errors import NotFound

router = APIRouter(tags=["audit"])


@router.get("/v1/audit")
async def audit_entries(api: ApiDep, principal: Approver,
                        run_id: Annotated[str | None, Query(max_length=128)] = None,
                        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
                        ) -> list[dict[str, Any]]:
    """The tenant's audit entries in chain order (one run's with ``run_id``)."""
    store = api.services.store
    if run_id is not None:
        run = store.get_run(run_id)
        if run is None or run.tenant != principal.tenant:
            raise NotFound(f"run {run_id} not found")
    return store.audit_entries(principal.tenant, run_id, limit)


@router.get("/v1/audit/verify")
async def verify(api: ApiDep, principal: Approver) -> dict[str, Any]:
    """Recompute the tenant's chain: ``{ok, entries, first_bad_entry}``."""
    result = api.services.store.verify_audit(principal.tenant)
    return {"ok": result.ok, "entries": result.entries,
            "first_bad_entry": result.first_bad_entry}
