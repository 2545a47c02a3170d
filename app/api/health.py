"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, response: Response) -> dict[str, str]:
    """200 once storage, checkpointer and run manager are open; 503 until then."""
    if getattr(request.app.state, "api", None) is None:
        response.status_code = 503
        return {"status": "starting"}
    return {"status": "ready"}
