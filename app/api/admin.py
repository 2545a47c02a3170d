"""The admin kill switch: pause new runs, disable tools (takes effect at once)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.api.auth import Admin
from app.api.deps import ApiDep
from app.errors import InvalidRequest

router = APIRouter(tags=["admin"])
log = logging.getLogger(__name__)


class KillSwitchState(BaseModel):
    """Whether new runs are paused, and which tools are out of service."""

    paused: bool = False
    disabled_tools: list[str] = Field(default_factory=list, max_length=200)
    active_runs: int = 0


class KillSwitchUpdate(BaseModel):
    """Fields to change; omitted ones stay as they are."""

    paused: bool | None = None
    disabled_tools: list[str] | None = Field(default=None, max_length=200)


def _state(api: ApiDep) -> KillSwitchState:
    s = api.services.switch
    return KillSwitchState(paused=s.paused, disabled_tools=sorted(s.disabled_tools),
                           active_runs=api.manager.active)


@router.get("/v1/admin/killswitch")
async def get_killswitch(api: ApiDep, principal: Admin) -> KillSwitchState:
    """The switches as they are now."""
    return _state(api)


@router.put("/v1/admin/killswitch")
async def set_killswitch(body: KillSwitchUpdate, api: ApiDep, principal: Admin) -> KillSwitchState:
    """Flip switches; a disabled tool is denied by the policy gate from its next call."""
    switch = api.services.switch
    if body.disabled_tools is not None:
        unknown = sorted(set(body.disabled_tools) - set(api.services.registry.names()))
        if unknown:
            raise InvalidRequest(f"unknown tools: {', '.join(unknown)}", field="disabled_tools")
        switch.disabled_tools = set(body.disabled_tools)
    if body.paused is not None:
        switch.paused = body.paused
    log.warning("kill switch changed", extra={"status": f"paused={switch.paused}"})
    return _state(api)
