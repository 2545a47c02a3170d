"""``GET /inbox``: the approval inbox page, server-rendered from a Jinja template.

The page is a shell; its script reads and decides approvals through the same JSON API
(``/v1/approvals``) with the same API key, which the approver types once and the browser
keeps in ``sessionStorage``. In local dev mode no key is needed.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.api.deps import ApiDep
from app.api.pages import page

router = APIRouter(tags=["inbox"])


@router.get("/inbox", response_class=HTMLResponse, include_in_schema=False)
async def inbox(request: Request, api: ApiDep) -> HTMLResponse:
    """The approver's inbox: pending / decided / expired, detail, decide."""
    return page("inbox.html", local_mode=api.keyring.local_mode, active="/inbox",
                tabs=["pending", "decided", "expired"], title="Foreman approvals")
