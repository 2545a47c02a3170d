"""``/metrics`` in Prometheus text: every tenant's figures for an operator, the caller's
tenant's for its admin. The figures are read from the store at scrape time, so the
exposition is rendered off the event loop (:meth:`Api.off_loop`)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import generate_latest

from app.api.auth import AdminOrOperator
from app.api.deps import ApiDep

router = APIRouter(tags=["ops"])


@router.get("/metrics", response_class=Response)
async def metrics(api: ApiDep, principal: AdminOrOperator) -> Response:
    """Prometheus exposition."""
    registry = (api.metrics.registry if principal.has("operator")
                else api.metrics.of_tenant(principal.tenant))
    return Response(await api.off_loop(generate_latest, registry),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
