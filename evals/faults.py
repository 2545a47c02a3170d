"""Fault injection: provider errors at the OpenAI wire (respx, through litellm's real client
path) and tools that raise.

Wire scenarios run against two OpenAI-compatible deployments on a made-up host; respx
answers every request with the scenario's script, or with the fault due for that call.
Nothing leaves the machine: the mock is ``assert_all_mocked=True``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx

from app.llm.provider import ProviderReply
from app.llm.scripted import ScriptedProvider
from app.settings import FallbackConfig, ModelEntry, Settings
from evals.behaviours import Script
from evals.scenario import Fault
from graphs.ports import ModelRequest
from tools.registry import ToolRegistry
from tools.spec import ToolContext, ToolSpec

API_BASE = "http://llm.test/v1"
KEY_ENV = "FOREMAN_EVAL_DUMMY_KEY"
DUMMY_KEY = "sk-eval-dummy-not-a-key"
WIRE_MODELS = {"gpt-4o-mini": "small", "gpt-4o": "large"}


def wire_settings(settings: Settings) -> Settings:
    """Route every role to OpenAI-compatible deployments on ``API_BASE`` (same tiers as the
    bundled config), with backoff waits kept short so retries do not dominate wall time."""
    models = [ModelEntry(name="wire-small", litellm_model="openai/gpt-4o-mini", tier="small",
                         api_base=API_BASE, api_key_env=KEY_ENV, timeout_s=10),
              ModelEntry(name="wire-large", litellm_model="openai/gpt-4o", tier="large",
                         api_base=API_BASE, api_key_env=KEY_ENV, timeout_s=10)]
    roles = {"manager.plan": "wire-large", "manager.progress": "wire-small",
             "manager.verify": "wire-small", "manager.final": "wire-large",
             "specialist": "wire-small"}
    fast = FallbackConfig(max_retries=2, backoff_base_s=0.01, backoff_max_s=0.05, jitter=0,
                          retry_after_max_s=0.05)
    routing = settings.routing.model_copy(update={"roles": roles, "fallbacks": fast})
    return settings.model_copy(update={"offline": False, "models": [*settings.models, *models],
                                       "routing": routing})


def role_of(body: Mapping[str, Any]) -> str:
    """Which Foreman role sent this wire request, read from the prompt as a model would."""
    system = str(body["messages"][0]["content"])
    if body.get("tools"):
        return "specialist." + system.split('"', 2)[1]
    last = str(body["messages"][-1]["content"])
    for marker, role in (("Write the task ledger", "manager.plan"),
                         ("Write the final answer", "manager.final"),
                         ("Before the request is declared done", "manager.verify")):
        if marker in last:
            return role
    return "manager.progress"


def chat_body(reply: ProviderReply, model: str, prompt_tokens: int) -> dict[str, Any]:
    """An OpenAI ``/v1/chat/completions`` response body."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in reply.tool_calls]
    completion = max(1, len((reply.content or "") + "".join(
        c.arguments for c in reply.tool_calls)) // 4)
    return {"id": "chatcmpl-eval", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                      "total_tokens": prompt_tokens + completion}}


class WireModel:
    """The respx side effect: the scenario's script behind an OpenAI-compatible endpoint."""

    def __init__(self, script: Script, faults: list[Fault]) -> None:
        self.script = script
        self.faults = [f for f in faults if f.wire]
        self.seen: Counter[str] = Counter()
        self.injected: list[dict[str, Any]] = []
        self.fallback = ScriptedProvider()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        role = role_of(body)
        self.seen[role] += 1
        for fault in self.faults:
            if fault.role == role and self.seen[role] in fault.calls:
                self.injected.append({"kind": fault.kind, "role": role, "call": self.seen[role]})
                return _fault_response(fault, request)
        model = str(body.get("model", ""))
        req = ModelRequest(role=role, messages=body["messages"],
                           call_key=hashlib.sha256(request.content).hexdigest(),
                           tools=body.get("tools"), json_output="response_format" in body)
        reply = self.script.reply(WIRE_MODELS.get(model, "small"), req)
        if reply is None:
            reply = self.fallback._default(req)
        prompt_tokens = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4
        return httpx.Response(200, json=chat_body(reply, model, max(1, prompt_tokens)))


def _fault_response(fault: Fault, request: httpx.Request) -> httpx.Response:
    if fault.kind == "http_429":
        return httpx.Response(429, headers={"retry-after": "0"},
                              json={"error": {"message": "rate limited", "type": "rate_limit"}})
    if fault.kind == "http_500":
        return httpx.Response(500, json={"error": {"message": "internal error"}})
    if fault.kind == "timeout":
        raise httpx.ReadTimeout("injected read timeout", request=request)
    # A stream cut off mid-body: the status line arrived, the JSON never finished.
    return httpx.Response(200, headers={"content-type": "application/json"},
                          content=b'{"id": "chatcmpl-eval", "object": "chat.completion", "choi')


class _Raising:
    """A tool implementation that raises for its first ``times`` calls."""

    def __init__(self, spec: ToolSpec, times: int) -> None:
        self.spec = spec
        self.left = times
        self.raised = 0

    def __call__(self, ctx: ToolContext, args: Any) -> Mapping[str, Any]:
        if self.left > 0:
            self.left -= 1
            self.raised += 1
            raise RuntimeError(f"injected failure in {self.spec.name}")
        return self.spec.run(ctx, args)


@contextmanager
def raising_tools(faults: list[Fault]) -> Iterator[dict[str, _Raising]]:
    """Make the named tools raise (as a broken integration would) while the block runs."""
    import app.executor as executor

    wanted = {f.tool: f.times for f in faults if f.kind == "tool_exception" and f.tool}
    if not wanted:
        yield {}
        return
    original = executor.resolve_tool
    hooks: dict[str, _Raising] = {}

    def resolve_tool(registry: ToolRegistry, name: str) -> ToolSpec:
        spec = original(registry, name)
        if name not in wanted:
            return spec
        hook = hooks.setdefault(name, _Raising(spec, wanted[name]))
        return replace(spec, func=hook)

    executor.resolve_tool = resolve_tool
    try:
        yield hooks
    finally:
        executor.resolve_tool = original
