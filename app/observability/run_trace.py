"""One run's trace: the span tree, built from the run's ports and its own events.

```
run {team}                              one per run segment (a resume links to the last)
├── round {n}                           the manager's round n
│   ├── chat {model}                    the progress-ledger / verify call
│   └── invoke_agent {agent}            one specialist step
│       ├── chat {model}                each of its model calls
│       └── execute_tool {tool}         each tool call (policy rule, approval id)
└── chat {model}                        plan, replan and final calls
```

Model and tool calls are wrapped at the ``ModelRouter`` / ``ToolExecutor`` ports, so their
spans are current while they run (and propagate over instrumented HTTP). Rounds, steps and
the figures the router records (tier, route reason, cost, retries) come from the run's
events, which the router emits inside the call. Nothing here changes what the run does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from app.governance.redact import redact
from app.observability.logs import trace_id_var
from app.observability.telemetry import Tracing, active
from app.runs.events import RunEvents
from app.storage.thread_keys import local_id, tenant_of
from graphs.approval import approval_id
from graphs.ports import (
    GateAction,
    GateDecision,
    GateRequest,
    ModelRequest,
    ModelResponse,
    PolicyGate,
    RunContext,
    ToolExecutor,
    ToolInvocation,
    ToolOutcome,
)
from graphs.ports import ModelRouter as RouterPort
from tools.spec import args_sha256

log = logging.getLogger(__name__)
T = TypeVar("T")
_ROUND = re.compile(r"^r(\d+)/")
_SCHEMA_DONE: weakref.WeakSet[Any] = weakref.WeakSet()  # databases that have run_traces
TRACES_SCHEMA = """CREATE TABLE IF NOT EXISTS run_traces (
    run_id TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL,
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, PRIMARY KEY (run_id, started_at))"""


class RunTrace:
    """The spans of one run segment (a start, or a resume after a pause or a crash)."""

    def __init__(self, tracing: Tracing, run_id: str, thread_id: str, team: str,
                 events: RunEvents) -> None:
        self.tracing = tracing
        self.tracer = tracing.tracer
        self.run_id = run_id
        self.events = events
        self.rounds: dict[int, Span] = {}
        self.round = 0
        self.steps: dict[tuple[int, str, str], Span] = {}
        self.calls: dict[str, Span] = {}
        self.gated: dict[tuple[str, str], GateDecision] = {}
        self.finished = False
        earlier = tracing.segments.pop(run_id, None)
        if earlier is not None:  # e.g. a pause recorded without a new approval
            earlier.finish("superseded")
        self.span = self._open_run(thread_id, team)
        tracing.segments[run_id] = self
        trace_id_var.set(f"{self.span.get_span_context().trace_id:032x}")

    def bind(self, context: RunContext) -> RunContext:
        """``context`` with traced router, tools and gate; listens to the run's events."""
        self.events.watchers.append(self.on_event)
        return replace(context, router=TracedRouter(context.router, self),
                       tools=TracedTools(context.tools, self),
                       gate=TracedGate(context.gate, self))

    # the run span, linked to the run's earlier segments
    def _open_run(self, thread_id: str, team: str) -> Span:
        db = self.events.store.db
        if db not in _SCHEMA_DONE:
            with db.tx() as c:
                c.run(TRACES_SCHEMA)
            _SCHEMA_DONE.add(db)
        earlier = db.query("SELECT trace_id, span_id FROM run_traces WHERE run_id = ?"
                           " ORDER BY started_at DESC LIMIT 1", (self.run_id,))
        links = [Link(SpanContext(int(r["trace_id"], 16), int(r["span_id"], 16),
                                  is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)),
                      {"foreman.link": "earlier segment of this run"}) for r in earlier]
        # Continue a caller's trace (traceparent), never a finished run's own span.
        caller = trace.get_current_span().get_span_context()
        parent = otel_context.get_current() if caller.is_remote else otel_context.Context()
        span = self.tracer.start_span(f"run {team}", context=parent, kind=SpanKind.INTERNAL,
                                      links=links, attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": team,
            # The tenant's own thread id, never the internal key (thread_keys.py).
            "gen_ai.conversation.id": local_id(thread_id), "foreman.run_id": self.run_id,
            "foreman.thread_id": local_id(thread_id), "foreman.team": team,
            **({"foreman.tenant": tenant} if (tenant := tenant_of(thread_id)) else {}),
            "foreman.resumed": bool(earlier)})
        ctx = span.get_span_context()
        with db.tx() as c:
            c.run("INSERT INTO run_traces (run_id, started_at, trace_id, span_id)"
                  " VALUES (?, ?, ?, ?)", (self.run_id, time.time(),
                                           f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"))
        return span

    def finish(self, status: str, error: str | None = None) -> None:
        """End every open span of the segment (children first)."""
        if self.finished:
            return
        self.finished = True
        if self.tracing.segments.get(self.run_id) is self:
            del self.tracing.segments[self.run_id]
        for span in [*self.steps.values(), *self.rounds.values()]:
            span.end()
        self.steps.clear()
        self.rounds.clear()
        self.span.set_attribute("foreman.status", status)
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, error[:300]))
        self.span.end()

    # parents
    def _under(self, span: Span) -> otel_context.Context:
        return trace.set_span_in_context(span)

    def round_span(self, n: int) -> Span:
        """Round ``n``'s span, opened when the round's first call or step shows up."""
        if n not in self.rounds:
            if self.round in self.rounds and self.round != n:
                self.rounds.pop(self.round).end()
            self.rounds[n] = self.tracer.start_span(
                f"round {n}", context=self._under(self.span), attributes={"foreman.round": n})
        self.round = n
        return self.rounds[n]

    def parent_of_call(self, request: ModelRequest) -> Span:
        """Where a model call hangs: its step, its round, or the run."""
        m = _ROUND.match(request.call_key)
        if m is None:
            if request.call_key.startswith("final") and self.round in self.rounds:
                self.rounds.pop(self.round).end()
            return self.span
        n = int(m.group(1))
        parts = request.call_key.split("/")
        if request.role.startswith("specialist.") and len(parts) >= 5:
            return self.step_span(n, parts[2], parts[3])
        return self.round_span(n)

    def step_span(self, n: int, step_id: str, agent: str) -> Span:
        """The ``invoke_agent`` span of a specialist step."""
        key = (n, step_id, agent)
        if key not in self.steps:
            self.steps[key] = self.tracer.start_span(
                f"invoke_agent {agent}", context=self._under(self.round_span(n)),
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
                            "foreman.step_id": step_id, "foreman.round": n})
        return self.steps[key]

    def step_of_agent(self, agent: str) -> Span:
        """The latest open step of ``agent`` (a tool call's parent)."""
        for (_, _, name), span in reversed(self.steps.items()):
            if name == agent:
                return span
        return self.rounds.get(self.round, self.span)

    # events the run emits
    def on_event(self, type: str, data: Mapping[str, Any]) -> None:
        """Fold one run event into the spans; tracing never fails the run."""
        try:
            self._fold(type, data)
        except Exception:  # a malformed event costs its span detail, never the run
            log.warning("tracing skipped an event", extra={"run_id": self.run_id,
                                                           "status": type})

    def _fold(self, type: str, data: Mapping[str, Any]) -> None:
        if type == "model_call":
            self._model_call(data)
        elif type == "agent_started":
            self.step_span(int(data["round"]), str(data["step_id"]), str(data["agent"]))
        elif type == "agent_finished":
            for key in [k for k in self.steps if k[1:] == (data["step_id"], data["agent"])]:
                span = self.steps.pop(key)
                span.set_attribute("foreman.ok", bool(data.get("ok")))
                span.end()
        elif type == "ledger_updated":
            span = self.round_span(int(data["round"]))
            span.set_attribute("foreman.stall_count", int(data.get("stall_count") or 0))
            span.set_attribute("foreman.next_steps", len(data.get("next_steps") or []))
        elif type == "replanned":
            self.span.add_event("replanned", {"foreman.replans": int(data.get("replans") or 0)})
        elif type == "approval_requested":
            self.span.add_event("approval_requested", _scalars({
                "foreman.approval_id": data.get("approval_id"),
                "foreman.policy_rule": data.get("policy_rule"),
                "foreman.action": data.get("action")}))
            self.span.set_attribute("foreman.approval_id", str(data.get("approval_id")))
            # Every pending approval is recorded in one go; end the segment after the last.
            asyncio.get_running_loop().call_soon(self.finish, "interrupted")
        elif type == "run_completed":
            self.span.set_attribute("foreman.stop_reason", str(data.get("stop_reason")))
            self.span.set_attribute("foreman.cost_usd", float(data.get("cost_usd") or 0))
            self.finish("success")
        elif type == "run_failed":
            self.finish("error", str(data.get("reason")))

    def _model_call(self, data: Mapping[str, Any]) -> None:
        key = str(data.get("call_key") or "")
        span = self.calls.get(key.partition("#")[0])
        if span is None:
            return
        outcome = str(data.get("outcome") or "ok")
        if "#" in key or outcome not in ("ok", "cached"):
            span.add_event("foreman.attempt_failed", _scalars({
                "gen_ai.request.model": data.get("model"), "foreman.outcome": outcome,
                "error.type": outcome, "foreman.retry_in_s": data.get("retry_in_s")}))
            return
        span.update_name(f"chat {data.get('model')}")
        span.set_attributes(_scalars({
            "gen_ai.request.model": data.get("model"),
            "gen_ai.provider.name": self.tracing.provider_of(str(data.get("model"))),
            "gen_ai.usage.input_tokens": data.get("prompt_tokens"),
            "gen_ai.usage.output_tokens": data.get("completion_tokens"),
            "foreman.tier": data.get("tier"), "foreman.route_reason": data.get("route_reason"),
            "foreman.cost_usd": data.get("cost_usd"), "foreman.outcome": outcome,
            "foreman.latency_ms": data.get("latency_ms"), "foreman.replayed": False}))

    def content(self, value: Any) -> str:
        """Prompt/response/tool content for a span (only when capture is on), redacted."""
        return json.dumps(redact(value), default=str)[:8000]


class TracedRouter:
    """``chat {model}`` around each model call."""

    def __init__(self, inner: RouterPort, run: RunTrace) -> None:
        self.inner = inner
        self.run = run

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Route and call as before, inside the call's span."""
        run = self.run
        span = run.tracer.start_span("chat", context=run._under(run.parent_of_call(request)),
                                     kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "foreman.role": request.role,
            "foreman.call_key": request.call_key, "foreman.replayed": True})
        if run.tracing.capture_content:
            span.set_attribute("gen_ai.input.messages", run.content(request.messages))
        run.calls[request.call_key] = span
        try:
            response = await _in_span(run, span, self.inner.complete(request))
        finally:
            run.calls.pop(request.call_key, None)
        span.set_attribute("gen_ai.response.model", response.model)
        if run.tracing.capture_content:
            span.set_attribute("gen_ai.output.messages", run.content(
                {"content": response.content,
                 "tool_calls": [c.__dict__ for c in response.tool_calls]}))
        span.end()
        return response


class TracedGate:
    """Notes each decision so the tool span can name its rule and approval."""

    def __init__(self, inner: PolicyGate, run: RunTrace) -> None:
        self.inner = inner
        self.run = run

    def check(self, request: GateRequest) -> GateDecision:
        """The policy's decision, unchanged."""
        decision = self.inner.check(request)
        self.run.gated[(request.tool, args_sha256(dict(request.args)))] = decision
        return decision


class TracedTools:
    """``execute_tool {tool}`` around each cleared tool call."""

    def __init__(self, inner: ToolExecutor, run: RunTrace) -> None:
        self.inner = inner
        self.run = run

    async def recorded(self, key: str) -> bool:
        """The wrapped executor's answer."""
        return await self.inner.recorded(key)

    async def execute(self, invocation: ToolInvocation) -> ToolOutcome:
        """Run (or replay) the call as before, inside its span."""
        run = self.run
        call_id = invocation.key[len(invocation.thread_id) + 1:]
        digest = args_sha256(dict(invocation.args))
        decision = run.gated.get((invocation.tool, digest))
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": invocation.tool,
            "gen_ai.tool.call.id": call_id, "gen_ai.agent.name": invocation.agent}
        if decision is not None:
            attrs["foreman.policy_rule"] = decision.rule
            if decision.action == GateAction.REQUIRE_APPROVAL:
                attrs["foreman.approval_id"] = self._approval(invocation, call_id, digest)
        span = run.tracer.start_span(f"execute_tool {invocation.tool}", attributes=attrs,
                                     context=run._under(run.step_of_agent(invocation.agent)))
        if run.tracing.capture_content:
            span.set_attribute("gen_ai.tool.call.arguments", run.content(invocation.args))
        outcome = await _in_span(run, span, self.inner.execute(invocation))
        span.set_attribute("foreman.tool.ok", outcome.ok)
        span.set_attribute("foreman.replayed", outcome.replayed)
        if not outcome.ok:
            span.set_status(Status(StatusCode.ERROR, "tool error"))
        if run.tracing.capture_content:
            span.set_attribute("gen_ai.tool.call.result", run.content(dict(outcome.data)))
        span.end()
        return outcome

    def _approval(self, invocation: ToolInvocation, call_id: str, digest: str) -> str:
        """The approval this call ran under (its id binds the arguments first asked for)."""
        for row in self.run.events.store.run_approvals(self.run.run_id):
            if row.action == invocation.tool and row.id == approval_id(
                    invocation.thread_id, call_id, row.args_sha256):
                return row.id
        return approval_id(invocation.thread_id, call_id, digest)


async def _in_span(run: RunTrace, span: Span, work: Awaitable[T]) -> T:
    """Await ``work`` inside ``span``; a failure ends the span, a cancel the whole segment."""
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=False):
            return await work
    except asyncio.CancelledError:
        span.end()
        run.finish("cancelled")
        raise
    except Exception as e:
        span.set_status(Status(StatusCode.ERROR, type(e).__name__))
        span.set_attribute("error.type", type(e).__name__)
        span.end()
        raise


def traced(context: RunContext, run_id: str, thread_id: str, team: str,
           events: RunEvents) -> RunContext:
    """The run's context with its ports traced (unchanged when tracing is off)."""
    tracing = active()
    if tracing is None:
        return context
    return RunTrace(tracing, run_id, thread_id, team, events).bind(context)


def _scalars(values: Mapping[str, Any]) -> dict[str, Any]:
    """Span attributes: None dropped, non-scalars as text."""
    return {k: v if isinstance(v, str | bool | int | float) else str(v)
            for k, v in values.items() if v is not None}
