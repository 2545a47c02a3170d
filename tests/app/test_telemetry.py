"""Run traces from an in-memory exporter: the span tree of a paused and resumed refund run,
GenAI and foreman attributes, the link between segments, trace ids in audit and logs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.api.auth import Principal
from app.config.settings import Settings
from app.governance.resumers import InlineResume
from app.observability import telemetry
from app.observability.logs import JsonFormatter, trace_id_var
from app.services import Services, open_services

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
BOB = Principal("bob", "acme", frozenset({"approver"}),
                groups=frozenset({"support-leads", "budget-owners"}))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.install(provider, providers={"scripted-small": "foreman.scripted",
                                           "scripted-large": "foreman.scripted"})
    yield exporter
    telemetry.uninstall()


@pytest.fixture
async def svc(policy_settings: Settings) -> AsyncIterator[Services]:
    async with open_services(policy_settings) as s:
        yield s


def _parent(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> ReadableSpan | None:
    return by_id.get(span.parent.span_id) if span.parent else None


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_telemetry_span_tree_of_a_paused_and_resumed_run(
        svc: Services, spans: InMemorySpanExporter) -> None:
    paused = await svc.runner.start(TASK, "support", tenant="acme", created_by="alice")
    assert paused.status == "interrupted"
    await asyncio.sleep(0)  # the segment ends once every pending approval is recorded
    first = list(spans.get_finished_spans())
    (run1,) = [s for s in first if s.name == "run support"]
    assert _attrs(run1)["foreman.status"] == "interrupted"
    approval = paused.interrupts[0].value["approval_id"]
    assert _attrs(run1)["foreman.approval_id"] == approval
    assert {s.context.trace_id for s in first} == {run1.context.trace_id}

    by_id = {s.context.span_id: s for s in first}
    rounds = [s for s in first if s.name.startswith("round ")]
    steps = [s for s in first if s.name.startswith("invoke_agent ")]
    chats = [s for s in first if s.name.startswith("chat ")]
    tools = [s for s in first if s.name.startswith("execute_tool ")]
    assert [s.name for s in rounds] == ["round 1", "round 2"]
    assert all(_parent(r, by_id) is run1 for r in rounds)
    assert {s.name for s in steps} == {"invoke_agent researcher", "invoke_agent billing"}
    assert all(_parent(s, by_id) in rounds for s in steps)
    assert {s.name for s in tools} == {"execute_tool lookup_customer",
                                       "execute_tool lookup_order", "execute_tool find_tickets"}
    assert all(_parent(t, by_id).name == "invoke_agent researcher" for t in tools)  # type: ignore[union-attr]

    plan = next(c for c in chats if _attrs(c)["foreman.role"] == "manager.plan")
    assert _parent(plan, by_id) is run1
    progress = next(c for c in chats if _attrs(c)["foreman.role"] == "manager.progress")
    assert _parent(progress, by_id).name == "round 1"  # type: ignore[union-attr]
    specialist = next(c for c in chats if _attrs(c)["foreman.role"] == "specialist.billing")
    assert _parent(specialist, by_id).name == "invoke_agent billing"  # type: ignore[union-attr]
    a = _attrs(specialist)
    assert specialist.name == f"chat {a['gen_ai.request.model']}"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "foreman.scripted"
    assert a["gen_ai.response.model"] == a["gen_ai.request.model"]
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["foreman.tier"] in {"small", "medium", "large"} and a["foreman.cost_usd"] > 0
    assert a["foreman.route_reason"].startswith("routed:") and a["foreman.replayed"] is False
    assert not any("gen_ai.input.messages" in _attrs(s) for s in first)  # content off
    assert _attrs(next(t for t in tools if t.name.endswith("find_tickets")))[
        "foreman.policy_rule"] == "default"

    # The decision resumes the run in a new segment that links to the first.
    spans.clear()
    resumer = InlineResume(svc.runner)
    await svc.approvals.decide(BOB, approval, "approve", resumer)
    assert resumer.result is not None and resumer.result.status == "success"
    second = list(spans.get_finished_spans())
    (run2,) = [s for s in second if s.name == "run support"]
    assert _attrs(run2)["foreman.status"] == "success" and _attrs(run2)["foreman.resumed"]
    assert [link.context.span_id for link in run2.links] == [run1.context.span_id]
    assert run2.context.trace_id != run1.context.trace_id
    refund = next(s for s in second if s.name == "execute_tool issue_refund")
    assert _attrs(refund)["foreman.approval_id"] == approval
    assert _attrs(refund)["foreman.policy_rule"] == "refunds-over-50"
    assert _attrs(refund)["foreman.tool.ok"] is True
    resumed_step = _parent(refund, {s.context.span_id: s for s in second})
    assert resumed_step is not None and resumed_step.name == "invoke_agent billing"

    entries = svc.store.audit_entries("acme", paused.run_id)
    traced = [e for e in entries if e["type"] not in ("run_started", "approval_decided")]
    assert {e["data"].get("trace_id") for e in traced} == {
        f"{run1.context.trace_id:032x}", f"{run2.context.trace_id:032x}"}
    first_refund = next(e for e in entries if e["type"] == "approval_requested")
    assert first_refund["data"]["trace_id"] == f"{run1.context.trace_id:032x}"


async def test_telemetry_off_leaves_the_run_context_alone(svc: Services) -> None:
    assert telemetry.active() is None
    result = await svc.runner.start("Customer C-1002 asks where order O-5003 is; reply with "
                                    "its shipping status", "support", tenant="acme")
    assert result.status == "success"
    entries = svc.store.audit_entries("acme", result.run_id)
    assert entries and not any("trace_id" in e["data"] for e in entries)


async def test_telemetry_content_capture_is_redacted(
        svc: Services, spans: InMemorySpanExporter) -> None:
    active = telemetry.active()
    assert active is not None
    active.capture_content = True
    await svc.runner.start(TASK, "support", tenant="acme", created_by="alice")
    found = list(spans.get_finished_spans())
    sent = [_attrs(s)["gen_ai.input.messages"] for s in found if s.name.startswith("chat ")]
    results = [_attrs(s)["gen_ai.tool.call.result"] for s in found
               if s.name == "execute_tool lookup_customer"]
    assert sent and results
    assert "ada@example.com" not in results[0] and "[REDACTED:email]" in results[0]


def test_telemetry_trace_id_in_json_logs() -> None:
    record = logging.LogRecord("app.runs.runner", logging.INFO, __file__, 1, "step", None, None)
    token = trace_id_var.set("ab" * 16)
    try:
        out = json.loads(JsonFormatter().format(record))
    finally:
        trace_id_var.reset(token)
    assert out["trace_id"] == "ab" * 16
    assert "trace_id" not in json.loads(JsonFormatter().format(record))


async def test_telemetry_model_call_span_travels_on_the_providers_http(
        svc: Services, spans: InMemorySpanExporter) -> None:
    import httpx
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    from app.observability.run_trace import traced
    from app.runs.events import RunEvents, SystemClock
    from app.runs.executor import LedgerExecutor
    from graphs.ports import ModelRequest, ModelResponse, RunContext, Usage
    from tests.fakes import WebhookReceiver

    endpoint = WebhookReceiver("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")

    class HttpModel:
        """A provider that answers over HTTP (to the local endpoint)."""

        async def complete(self, request: ModelRequest) -> ModelResponse:
            async with httpx.AsyncClient() as c:
                await c.post(endpoint.url + "/v1/chat/completions",
                             json={"type": "chat", "data": {}})
            return ModelResponse("ok", [], Usage(3, 2, 0.0), "m-small")

    run = svc.runner.create("a task", "support", tenant="acme")
    events = RunEvents(svc.store, run.id)
    context = traced(RunContext(router=HttpModel(),
                                tools=LedgerExecutor(svc.store, svc.runner.registry),
                                gate=svc.runner.gate, events=events, clock=SystemClock()),
                     run.id, run.thread_id, "support", events)
    active = telemetry.active()
    assert active is not None
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=active.provider)
    try:
        await context.router.complete(ModelRequest(role="manager.plan", messages=[],
                                                   call_key="plan/a0"))
    finally:
        instrumentor.uninstrument()
        endpoint.close()
    (sent,) = endpoint.attempts
    _, trace_id, parent_id, _ = sent["headers"]["traceparent"].split("-")
    finished = {s.context.span_id: s for s in spans.get_finished_spans()}
    chat = next(s for s in finished.values() if s.name.startswith("chat"))
    http = finished[int(parent_id, 16)]  # the client span the instrumented httpx made
    assert trace_id == f"{chat.context.trace_id:032x}"
    assert http.parent is not None and http.parent.span_id == chat.context.span_id
