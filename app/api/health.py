"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, response: Response) -> dict[str, Any]:
    """200 once storage, checkpointer and run manager are open; 503 until then.

    ``models`` maps each role to its model and whether it is reachable (``checking`` until
    the probe that starts with the server has answered).
    """
    if getattr(request.app.state, "api", None) is None:
        response.status_code = 503
        return {"status": "starting"}
    models = getattr(request.app.state, "models", None)
    return {"status": "ready", "offline": request.app.state.api.services.offline,
            "models": "checking" if models is None
            else {role: m.to_json() for role, m in models.items()}}
