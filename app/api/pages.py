"""What the web pages share: the Jinja environment and the headers every page is sent with.

The inbox and the run console are one web app: one layout (``base.html``), one navigation,
one sign-in (the API key typed once and kept in ``sessionStorage``; none in local dev mode).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
NAV = [("/console", "Runs"), ("/inbox", "Approvals")]


@lru_cache(maxsize=1)
def templates() -> Environment:
    """The page templates; autoescaping on, undefined names an error."""
    return Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                       autoescape=select_autoescape(default=True, default_for_string=True))


def page(template: str, *, local_mode: bool, active: str, **values: object) -> HTMLResponse:
    """Render one page of the web app inside the shared layout."""
    html = templates().get_template(template).render(local_mode=local_mode, nav=NAV,
                                                     active=active, **values)
    return HTMLResponse(html, headers=HEADERS)
