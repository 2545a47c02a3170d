"""OpenTelemetry traces of runs, GenAI semantic conventions; off unless asked for.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set or
``telemetry.enabled`` is true; the standard ``OTEL_*`` variables configure the OTLP/HTTP
exporter. Off, ``run_trace.traced`` hands the run context back untouched and costs nothing.

One trace per run; its span tree is built by ``run_trace``, which builds on this module
(never the other way round). A W3C ``traceparent`` on an HTTP request continues the
caller's trace: :class:`TraceContext` puts it in the request's context, and the run's task
inherits it. While a model or tool call runs its span is the current one, so instrumented
``httpx`` clients (providers, HTTP MCP servers) send it on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config.settings import Settings
from app.observability.logs import trace_id_var

log = logging.getLogger(__name__)
TRACER_NAME = "foreman"


class Segment(Protocol):
    """A run's trace segment still open in this process."""

    def finish(self, status: str, error: str | None = None) -> None:
        """End the segment's open spans with the run's status."""


@dataclass
class Tracing:
    """The process's tracer and what spans may carry."""

    provider: TracerProvider
    capture_content: bool = False
    providers: Mapping[str, str] | None = None  # catalog model name → gen_ai.provider.name
    owned: bool = False  # built by :func:`configure` (so shut down by it)
    # run id → its segment still open; kept here so shutdown can end them.
    segments: dict[str, Segment] = field(default_factory=dict)

    @property
    def tracer(self) -> trace.Tracer:
        """Foreman's tracer."""
        return self.provider.get_tracer(TRACER_NAME)

    def provider_of(self, model: str) -> str:
        """The GenAI provider name of a catalog model."""
        return (self.providers or {}).get(model, "unknown")


_active: Tracing | None = None


def active() -> Tracing | None:
    """The installed tracing, if any."""
    return _active


def wanted(settings: Settings) -> bool:
    """Whether configuration or the standard OTel environment asks for traces."""
    env = os.environ
    return bool(settings.telemetry.enabled or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def provider_names(settings: Settings) -> dict[str, str]:
    """``gen_ai.provider.name`` per catalog model, from its litellm id's prefix."""
    out = {}
    for m in settings.models:
        prefix, slash, _ = m.litellm_model.partition("/")
        out[m.name] = ("foreman.scripted" if m.scripted
                       else prefix if slash else "openai")  # litellm's default provider
    return out


def install(provider: TracerProvider, *, capture_content: bool = False,
            providers: Mapping[str, str] | None = None, owned: bool = False) -> Tracing:
    """Trace runs with ``provider`` from now on (tests install one with a memory exporter)."""
    global _active
    _active = Tracing(provider, capture_content, providers, owned)
    return _active


def uninstall() -> None:
    """Stop tracing (spans already ended stay exported)."""
    global _active
    _active = None


def configure(settings: Settings) -> Tracing | None:
    """Install OTLP/HTTP export when asked for (idempotent); None when tracing stays off."""
    if _active is not None:  # already on (configured, or installed by a test)
        return _active
    if not wanted(settings):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    resource = Resource.create({"service.name": os.environ.get(
        "OTEL_SERVICE_NAME", settings.telemetry.service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
    log.info("tracing runs over OTLP/HTTP")
    return install(provider, capture_content=settings.telemetry.capture_content,
                   providers=provider_names(settings), owned=True)


def shutdown() -> None:
    """Flush and stop what :func:`configure` started."""
    if _active is not None and _active.owned:
        # Runs still going resume in a new segment, linked to this one.
        for segment in list(_active.segments.values()):
            segment.finish("stopped")
        _active.provider.shutdown()
        uninstall()


class TraceContext:
    """Takes a W3C ``traceparent`` off each HTTP request (plain ASGI, like ``Timing``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _active is None:
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in (b"traceparent", b"tracestate")}
        if "traceparent" not in carrier:
            await self.app(scope, receive, send)
            return
        ctx = propagate.extract(carrier)
        span = trace.get_current_span(ctx).get_span_context()
        token = otel_context.attach(ctx)
        marked = trace_id_var.set(f"{span.trace_id:032x}" if span.is_valid else None)
        try:
            await self.app(scope, receive, send)
        finally:
            trace_id_var.reset(marked)
            otel_context.detach(token)
