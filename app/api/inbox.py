"""``GET /inbox``: the approval inbox page, server-rendered from a Jinja template.

The page is a shell; its script reads and decides approvals through the same JSON API
(``/v1/approvals``) with the same API key, which the approver types once and the browser
keeps in ``sessionStorage``. In local dev mode no key is needed.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.api.deps import ApiDep

router = APIRouter(tags=["inbox"])
TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def templates() -> Environment:
    """The page templates; autoescaping on, undefined names an error."""
    return Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                       autoescape=select_autoescape(default=True, default_for_string=True))


@router.get("/inbox", response_class=HTMLResponse, include_in_schema=False)
async def inbox(request: Request, api: ApiDep) -> HTMLResponse:
    """The approver's inbox: pending / decided / expired, detail, decide."""
    page = templates().get_template("inbox.html").render(
        local_mode=api.keyring.local_mode, tabs=["pending", "decided", "expired"],
        title="Foreman approvals")
    return HTMLResponse(page, headers={
        "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                   "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        "Cache-Control": "no-store"})
