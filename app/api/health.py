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

    ``mcp`` gives each configured MCP server's status as its live session stands:
    ``connected``, or ``down`` from the moment the session broke (a stdio process that
    exited, a closed connection, unanswered pings) until it reconnects in the background. A
    server that is down does not make Foreman unready: its tools answer with a clear error
    until it is back. ``models`` maps
    each role to its model and whether it is reachable (``checking`` until the probe that
    starts with the server has answered).
    """
    api = getattr(request.app.state, "api", None)
    if api is None:
        response.headers["Retry-After"] = "1"
        response.status_code = 503
        return {"status": "starting"}
    servers = {s.name: s.status for s in api.services.toolbox.servers()}
    models = getattr(request.app.state, "models", None)
    return {"status": "ready", **({"mcp": servers} if servers else {}),
            "offline": api.services.offline,
            "models": "checking" if models is None
            else {role: m.to_json() for role, m in models.items()}}
