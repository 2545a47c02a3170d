"""``/metrics`` in Prometheus text (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import generate_latest

from app.api.auth import Admin
from app.api.deps import ApiDep

router = APIRouter(tags=["ops"])


@router.get("/metrics", response_class=Response)
async def metrics(api: ApiDep, principal: Admin) -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(api.metrics.registry),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
