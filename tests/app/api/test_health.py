"""Liveness answers at once; readiness once the services are open."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config.settings import ModelEntry, RoutingConfig, Settings


def test_health_is_live_before_ready_and_ready_once_services_open(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = client.get("/readyz")
        api = client.app.state.api  # type: ignore[attr-defined]

    body = ready.json()
    assert body["status"] == "ready" and body["offline"] is True
    assert api.services.runner is not None


def _ready(client: TestClient) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = client.get("/readyz")
        if r.status_code == 200 and r.json()["models"] != "checking":
            return dict(r.json())
        time.sleep(0.05)
    raise AssertionError("readyz never reported the models")


def test_readyz_reports_offline_roles_on_scripted_models(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        models = _ready(client)["models"]
    assert models["manager.plan"] == {"model": "scripted-large", "reachable": True,
                                      "detail": "offline: built-in scripted model"}
    assert models["specialist"]["model"] == "scripted-small"


def test_readyz_names_a_role_whose_local_server_does_not_answer(settings: Settings) -> None:
    dead = ModelEntry(name="local", litellm_model="openai/qwen", api_base="http://127.0.0.1:9/v1",
                      input_cost_per_mtok=0, output_cost_per_mtok=0)
    roles = {r: "local" for r in settings.routing.roles}
    online = settings.model_copy(update={"offline": False, "models": [*settings.models, dead],
                                         "routing": RoutingConfig(
                                             roles=roles, offline=settings.routing.offline)})
    with TestClient(create_app(online)) as client:
        body = _ready(client)
    assert body["status"] == "ready" and body["offline"] is False
    assert body["models"]["manager.final"]["reachable"] is False
    assert "http://127.0.0.1:9/v1 does not answer" in body["models"]["manager.final"]["detail"]
