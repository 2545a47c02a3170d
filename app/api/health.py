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

    ``mcp`` gives each configured MCP server's status (a server that is down does not make
    Foreman unready: its tools answer with a clear error until it is back).
    """
    api = getattr(request.app.state, "api", None)
    if api is None:
        response.headers["Retry-After"] = "1"
        response.status_code = 503
        return {"status": "starting"}
    servers = {s.name: s.status for s in api.services.toolbox.servers()}
    return {"status": "ready", **({"mcp": servers} if servers else {})}
