"""Threads are keyed ``<tenant>/<id>`` inside; clients, tools, logs and spans see the id."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.api import errors
from app.config.settings import Settings
from app.observability import telemetry
from app.observability.logs import JsonFormatter
from app.runs.executor import LedgerExecutor
from app.services import open_services
from app.storage.db import SqliteDatabase
from app.storage.store import Store
from app.storage.thread_keys import local_id, tenant_of, thread_key
from graphs.ports import ToolInvocation
from tools.pack import tool
from tools.registry import ToolRegistry
from tools.spec import ToolContext

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.install(provider, providers={"scripted-small": "foreman.scripted",
                                           "scripted-large": "foreman.scripted"})
    yield exporter
    telemetry.uninstall()


def test_thread_keys_tenant_and_local_id_of_both_forms() -> None:
    key = thread_key("acme", "t-1")
    assert (local_id(key), tenant_of(key)) == ("t-1", "acme")
    assert (local_id("t-old"), tenant_of("t-old")) == ("t-old", None)


async def test_thread_keys_error_body_names_the_tenants_thread_id(settings: Settings) -> None:
    async with open_services(settings) as s:
        done = await s.runner.start(TASK, "support", tenant="acme")
        assert done.status == "success" and done.thread_id.startswith("acme/")
        app = FastAPI()
        errors.install(app)

        @app.post("/resume")
        async def resume() -> None:
            await s.runner.resume(done.thread_id)

        with TestClient(app) as client:
            r = client.post("/resume")

    assert r.status_code == 409
    body = r.json()
    assert body["detail"] == (f"run {done.run_id} on thread {local_id(done.thread_id)} "
                              "already finished")
    assert "acme/" not in r.text


async def test_thread_keys_tool_context_carries_the_local_id(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    @tool
    def whoami(ctx: ToolContext) -> dict[str, Any]:
        """Which thread and tenant the call came from."""
        seen.append((ctx.thread_id, ctx.tenant))
        return {"thread_id": ctx.thread_id}

    registry = ToolRegistry()
    registry.add(whoami)
    executor = LedgerExecutor(Store(SqliteDatabase(tmp_path / "foreman.db")), registry,
                              tenant="acme")
    key = thread_key("acme", "t-7")
    outcome = await executor.execute(ToolInvocation(
        key=f"{key}:call_1", thread_id=key, agent="researcher", tool="whoami", args={}))

    assert outcome.ok and outcome.data == {"thread_id": "t-7"}
    assert seen == [("t-7", "acme")]


def test_thread_keys_json_log_shows_the_id_and_the_tenant() -> None:
    record = logging.LogRecord("app.runs.executor", logging.INFO, __file__, 1, "ran", None, None)
    record.thread_id = thread_key("acme", "t-9")
    out = json.loads(JsonFormatter().format(record))
    assert (out["thread_id"], out["tenant"]) == ("t-9", "acme")
    record.thread_id = "t-old"  # a thread from before per-tenant ids has no tenant in its key
    out = json.loads(JsonFormatter().format(record))
    assert out["thread_id"] == "t-old" and "tenant" not in out


async def test_thread_keys_run_span_shows_the_id_and_the_tenant(
        settings: Settings, spans: InMemorySpanExporter) -> None:
    async with open_services(settings) as s:
        done = await s.runner.start(TASK, "support", tenant="acme")
    (run,) = [sp for sp in spans.get_finished_spans() if sp.name == "run support"]
    attrs = dict(run.attributes or {})
    assert attrs["foreman.thread_id"] == local_id(done.thread_id)
    assert attrs["gen_ai.conversation.id"] == local_id(done.thread_id)
    assert attrs["foreman.tenant"] == "acme"
    assert not any("acme/" in str(v) for sp in spans.get_finished_spans()
                   for v in (sp.attributes or {}).values())
