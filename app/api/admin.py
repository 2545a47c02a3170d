"""The kill switch over HTTP: a tenant admin's own tenant, or (operator) the platform.

``/v1/admin/killswitch`` pauses the admin's tenant, disables tools for it and caps its
concurrent runs; ``/v1/platform/killswitch`` does the same for every tenant and needs the
``operator`` role. Every change is audited with the principal who made it. The switches
are rows of the app store: reads and writes run off the event loop (:meth:`Api.off_loop`).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.api.auth import Admin, Operator, Principal
from app.api.deps import Api, ApiDep
from app.errors import InvalidRequest
from app.governance.killswitch import PLATFORM, SwitchState

router = APIRouter(tags=["admin"])
log = logging.getLogger(__name__)


class KillSwitchState(BaseModel):
    """Whether new runs are paused, which tools are out of service, the concurrency cap."""

    scope: str
    paused: bool = False
    disabled_tools: list[str] = Field(default_factory=list, max_length=200)
    max_concurrent_runs: int | None = None
    platform_paused: bool = False
    platform_disabled_tools: list[str] = Field(default_factory=list)
    active_runs: int = 0
    updated_by: str | None = None


class KillSwitchUpdate(BaseModel):
    """Fields to change; omitted ones stay as they are (``max_concurrent_runs: null``
    lifts the cap)."""

    paused: bool | None = None
    disabled_tools: list[str] | None = Field(default=None, max_length=200)
    max_concurrent_runs: int | None = Field(default=None, ge=1, le=10_000)


def _state(api: Api, scope: str) -> KillSwitchState:
    switch = api.services.switch
    own, platform = switch.state(scope), switch.state(PLATFORM)
    active = (api.manager.active if scope == PLATFORM
              else api.services.store.active_runs_of(scope))
    return KillSwitchState(
        scope="platform" if scope == PLATFORM else scope, paused=own.paused,
        disabled_tools=sorted(own.disabled_tools), max_concurrent_runs=own.max_concurrent_runs,
        platform_paused=platform.paused, platform_disabled_tools=sorted(platform.disabled_tools),
        active_runs=active, updated_by=own.updated_by)


def _change(api: Api, body: KillSwitchUpdate, scope: str, principal: Principal) -> SwitchState:
    update = body.model_dump(exclude_unset=True)
    if update.get("paused", False) is None:
        raise InvalidRequest("paused must be true or false", field="paused")
    if "disabled_tools" in update:
        if update["disabled_tools"] is None:
            raise InvalidRequest("disabled_tools must be a list", field="disabled_tools")
        unknown = sorted(set(update["disabled_tools"]) - set(api.services.registry.names()))
        if unknown:
            raise InvalidRequest(f"unknown tools: {', '.join(unknown)}", field="disabled_tools")
    state = api.services.switch.change(scope, principal.name, principal.tenant
                                       if scope != PLATFORM else PLATFORM, update)
    log.warning("kill switch changed by %s", principal.name, extra={
        "tenant": "platform" if scope == PLATFORM else scope,
        "status": f"paused={state.paused} disabled={len(state.disabled_tools)} "
                  f"cap={state.max_concurrent_runs}"})
    return state


def _changed(api: Api, body: KillSwitchUpdate, scope: str,
             principal: Principal) -> KillSwitchState:
    _change(api, body, scope, principal)
    return _state(api, scope)


@router.get("/v1/admin/killswitch")
async def get_killswitch(api: ApiDep, principal: Admin) -> KillSwitchState:
    """The caller's tenant's switches (and whether the platform's are on)."""
    return await api.off_loop(_state, api, principal.tenant)


@router.put("/v1/admin/killswitch")
async def set_killswitch(body: KillSwitchUpdate, api: ApiDep,
                         principal: Admin) -> KillSwitchState:
    """Flip the caller's tenant's switches; a disabled tool is denied from its next call."""
    return await api.off_loop(_changed, api, body, principal.tenant, principal)


@router.get("/v1/platform/killswitch")
async def get_platform_killswitch(api: ApiDep, principal: Operator) -> KillSwitchState:
    """The platform-wide switches (operator)."""
    return await api.off_loop(_state, api, PLATFORM)


@router.put("/v1/platform/killswitch")
async def set_platform_killswitch(body: KillSwitchUpdate, api: ApiDep,
                                  principal: Operator) -> KillSwitchState:
    """Flip the switches of every tenant at once (operator)."""
    return await api.off_loop(_changed, api, body, PLATFORM, principal)
