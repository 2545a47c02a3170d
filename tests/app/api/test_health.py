"""Liveness answers at once; readiness once the services are open."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from app.api.app import create_app
from app.settings import Settings


def test_health_is_live_before_ready_and_ready_once_services_open(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = client.get("/readyz")
        api = client.app.state.api  # type: ignore[attr-defined]

    assert ready.json() == {"status": "ready"}
    assert api.services.runner is not None
