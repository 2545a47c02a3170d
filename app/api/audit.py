"""The audit trail: a run's entries, and verification of the tenant's hash chain.

Platform-wide changes (the operator's kill switch) are chained apart, under the platform
scope: only an operator reads and verifies that chain, and no tenant's routes show it. The
reads (and the verification's hashing) run off the event loop (:meth:`Api.off_loop`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.auth import Approver, Operator
from app.api.deps import Api, ApiDep
from app.errors import NotFound
from app.governance.killswitch import PLATFORM

router = APIRouter(tags=["audit"])
Limit = Annotated[int, Query(ge=1, le=10_000)]


@router.get("/v1/audit")
async def audit_entries(api: ApiDep, principal: Approver,
                        run_id: Annotated[str | None, Query(max_length=128)] = None,
                        limit: Limit = 1000) -> list[dict[str, Any]]:
    """The tenant's audit entries in chain order (one run's with ``run_id``)."""
    def entries() -> list[dict[str, Any]]:
        store = api.services.store
        if run_id is not None:
            run = store.get_run(run_id)
            if run is None or run.tenant != principal.tenant:
                raise NotFound(f"run {run_id} not found")
        return store.audit_entries(principal.tenant, run_id, limit)

    return await api.off_loop(entries)


@router.get("/v1/audit/verify")
async def verify(api: ApiDep, principal: Approver) -> dict[str, Any]:
    """Recompute the tenant's chain: ``{ok, entries, first_bad_entry}``."""
    return await api.off_loop(_verified, api, principal.tenant)


@router.get("/v1/platform/audit")
async def platform_audit_entries(api: ApiDep, principal: Operator,
                                 limit: Limit = 1000) -> list[dict[str, Any]]:
    """The platform chain's entries in order: platform-wide switch changes (operator)."""
    return await api.off_loop(api.services.store.audit_entries, PLATFORM, None, limit)


@router.get("/v1/platform/audit/verify")
async def platform_verify(api: ApiDep, principal: Operator) -> dict[str, Any]:
    """Recompute the platform chain: ``{ok, entries, first_bad_entry}`` (operator)."""
    return await api.off_loop(_verified, api, PLATFORM)


def _verified(api: Api, scope: str) -> dict[str, Any]:
    result = api.services.store.verify_audit(scope)
    return {"ok": result.ok, "entries": result.entries,
            "first_bad_entry": result.first_bad_entry}
