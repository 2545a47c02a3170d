"""FastAPI app factory: everything long-lived is built in the lifespan, nothing at import."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import (
    admin,
    approvals,
    assistants,
    audit,
    chat,
    console,
    errors,
    events,
    health,
    inbox,
    links,
    metrics,
    runs,
    threads,
)
from app.api.auth import KeyRing
from app.api.deps import Api
from app.api.hygiene import BodyGuard
from app.config.settings import Settings
from app.observability.metrics import Metrics
from app.observability.telemetry import TraceContext
from app.observability.webhooks import Webhooks, check_secrets
from app.runs.broker import EventBroker
from app.runs.run_manager import RunManager
from app.services import open_services
from app.tooling.mcp_client import McpConnection
from graphs.ports import PolicyGate

log = logging.getLogger(__name__)


class Timing:
    """Request latency to the response's first byte, by method, route and status.

    Plain ASGI: a ``BaseHTTPMiddleware`` adds a task group and two streams to every request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                api: Api | None = getattr(scope["app"].state, "api", None)
                if api is not None:
                    route = getattr(scope.get("route"), "path", "unmatched")
                    api.metrics.latency.labels(scope["method"], route,
                                               str(message["status"])).observe(
                        time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed_send)


def manager_type(settings: Settings) -> type[RunManager]:
    """The run manager: this process executes runs, or queues them for workers (then, and
    only then, the queue's modules and procrastinate are imported)."""
    if settings.queue.api_executes:
        return RunManager
    from app.runs.queued_runs import QueuedRunManager

    return QueuedRunManager


async def probe_models(app: FastAPI, settings: Settings, offline: bool) -> None:
    """Find which roles have a reachable model, off the start path (``/readyz`` shows it)."""
    from app.llm.reach import banner, role_models

    app.state.models = await role_models(settings, offline)
    log.info("models", extra={"status": banner(app.state.models)})


def create_app(settings: Settings, *, gate: PolicyGate | None = None,
               connections: list[McpConnection] | None = None) -> FastAPI:
    """The Foreman HTTP service for ``settings`` (``gate`` swaps the policy gate in tests;
    ``connections``: MCP servers ``foreman serve`` began connecting before this was built)."""
    keyring = KeyRing.from_settings(settings)  # a missing key env var fails before serving
    check_secrets(settings)  # so does a webhook subscription's missing secret
    managers = manager_type(settings)  # imported here, off the event loop

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings, gate=gate,
                                 connections=connections) as services:
            broker = EventBroker()
            manager = managers(services, broker)
            await manager.open()
            app.state.api = Api(services, manager, broker, keyring, Metrics(services.store))
            app.state.keyring = keyring
            expired = await services.approvals.sweep(manager)  # before anything resumes
            recovered = manager.recover()
            sweeper = asyncio.create_task(
                manager.sweep_forever(settings.runs.approval_sweep_s), name="approval-sweeper")
            app.state.models = None
            reach = asyncio.create_task(probe_models(app, settings, services.offline),
                                        name="model-reachability")
            hooks = Webhooks(settings, services.store)
            dispatcher = asyncio.create_task(hooks.run_forever(), name="webhooks")
            log.info("foreman api ready", extra={
                "status": f"recovered={len(recovered)} expired={len(expired)}"})
            try:
                yield
            finally:
                sweeper.cancel()
                reach.cancel()
                dispatcher.cancel()
                await manager.close()
                await hooks.aclose()
                app.state.api.close()

    # FastAPI's own OpenTelemetry middleware stays off: Foreman's spans are its runs'
    # (app.observability.telemetry); left on, it looks up the global providers per request.
    app = FastAPI(title="Foreman", version="0.1.0", lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  description="Foreman's HTTP API: OpenAI-compatible chat, LangGraph-Platform "
                              "threads and runs, typed run events.")
    errors.install(app)
    links.declare(app)

    app.add_middleware(Timing)
    app.add_middleware(BodyGuard, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(TraceContext)

    for module in (health, metrics, chat, assistants, threads, runs, events, admin, approvals,
                   audit, inbox, console):
        app.include_router(module.router)
    return app
