"""Fault injection: provider errors at the OpenAI wire (respx, through litellm's real client
path), tools that raise, and seeded noise: the slips any model makes now and then.

Wire scenarios run against two OpenAI-compatible deployments on a made-up host; respx
answers every request with the scenario's script, or with the fault due for that call.
Nothing leaves the machine: the mock is ``assert_all_mocked=True``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx

from app.config.settings import FallbackConfig, ModelEntry, Settings
from app.llm.provider import ProviderReply
from app.llm.scripted import ScriptedProvider
from app.llm.tokens import completion_tokens, prompt_tokens, request_tokens
from evals.behaviours import EvalProvider, Script
from evals.metrics import FREE_TEXT
from evals.scenario import Fault
from graphs.ports import ModelRequest, ToolCall
from tools.registry import ToolRegistry
from tools.spec import ToolContext, ToolSpec

API_BASE = "http://llm.test/v1"
KEY_ENV = "FOREMAN_EVAL_DUMMY_KEY"
DUMMY_KEY = "sk-eval-dummy-not-a-key"
WIRE_MODELS = {"gpt-4o-mini": "small", "gpt-4o": "large"}
# The chance that one model call slips, by the tier that answers it. Large models slip
# too, only less often; the same draw decides for both tiers, so a call that slips on the
# large tier slips on the small one as well.
NOISE_RATES = {"small": 0.03, "large": 0.01}


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


class Noise:
    """Seeded slips of the scripted models, at ``NOISE_RATES`` per call (seed 0, the clean
    run, has none): a tool call with one argument off (a wrong id or amount), a ledger
    that is not JSON, a blocked step reported done, a final answer cut to its first
    sentence. Some the orchestrator recovers from (a repair turn, a replan), some it
    cannot; that is what pass^k and the cost-vs-success curve measure for every policy."""

    def __init__(self, scenario_id: str, seed: int,
                 rates: Mapping[str, float] | None = None) -> None:
        self.key = f"noise/{scenario_id}/{seed}"
        self.rates = dict(NOISE_RATES if rates is None else rates) if seed else {}
        self.calls: Counter[str] = Counter()
        self.injected: list[dict[str, Any]] = []

    def apply(self, tier: str, request: ModelRequest, reply: ProviderReply) -> ProviderReply:
        """The reply, or the slip this call makes."""
        role = request.role
        if role.startswith("specialist."):
            # A step's n-th call, named by its instruction: the same draw whatever order
            # the steps of a fan-out run in.
            first = next((str(m.get("content")) for m in request.messages
                          if m["role"] == "user"), "")
            n = sum(1 for m in request.messages if m["role"] == "assistant") + 1
            where = f"{role}/{hashlib.sha256(first.encode()).hexdigest()[:16]}/{n}"
        else:
            where = role
        self.calls[where] += 1  # a retried call draws again: a slip need not repeat
        where = f"{where}/{self.calls[where]}"
        if random.Random(f"{self.key}/{where}").random() >= self.rates.get(tier, 0.0):
            return reply
        slipped = _slip(role, request.json_output, reply)
        if slipped is None:
            return reply
        kind, out = slipped
        self.injected.append({"kind": f"noise_{kind}", "role": role, "tier": tier,
                              "call": where.split("/", 1)[1]})
        return out


def _slip(role: str, json_output: bool, reply: ProviderReply) -> tuple[str, ProviderReply] | None:
    if reply.tool_calls:
        first = reply.tool_calls[0]
        args = _off_by_one(first.arguments)
        if args is None:
            return None
        call = ToolCall(id=first.id, name=first.name, arguments=args)
        return "wrong_argument", replace(reply, tool_calls=[call, *reply.tool_calls[1:]])
    text = reply.content or ""
    if json_output:
        return "unparsable_output", replace(reply, content="The plan looks on track to me.")
    if role == "manager.final" and ". " in text:
        return "truncated_answer", replace(reply, content=text.split(". ", 1)[0] + ".")
    if role.startswith("specialist.") and text.startswith("BLOCKED"):
        return "false_report", replace(reply, content="DONE: " + text.split(":", 1)[-1].strip())
    return None


def _off_by_one(raw: str) -> str | None:
    """The arguments with their first id or number slightly wrong (None: nothing to bend)."""
    try:
        args = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if not isinstance(args, dict):
        return None
    for key, value in args.items():
        if key in FREE_TEXT or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            args[key] = round(value * 0.9, 2) if value else 1
            return json.dumps(args)
        if isinstance(value, str) and value[-1:].isdigit():
            args[key] = value[:-1] + str((int(value[-1]) + 1) % 10)
            return json.dumps(args)
    return None


class NoisyProvider(EvalProvider):
    """The scenario's scripted models with seeded noise, reporting usage by litellm's token
    counter for the model that answered."""

    def __init__(self, script: Script, noise: Noise) -> None:
        super().__init__(script)
        self.noise = noise

    async def complete(self, model: ModelEntry, request: ModelRequest) -> ProviderReply:
        """The script's answer (perhaps a slip), with its token counts."""
        reply = self.noise.apply(model.tier, request, await super().complete(model, request))
        return replace(reply, prompt_tokens=self.count_tokens(model, request),
                       completion_tokens=completion_tokens(model.litellm_model, reply.content,
                                                           reply.tool_calls))

    def count_tokens(self, model: ModelEntry, request: ModelRequest) -> int:
        """Prompt tokens by litellm's tokenizer for the model."""
        return request_tokens(model.litellm_model, request)


def chat_body(reply: ProviderReply, model: str, prompt: int) -> dict[str, Any]:
    """An OpenAI ``/v1/chat/completions`` response body."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in reply.tool_calls]
    completion = completion_tokens(f"openai/{model}", reply.content, reply.tool_calls)
    return {"id": "chatcmpl-eval", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}


class WireModel:
    """The respx side effect: the scenario's script behind an OpenAI-compatible endpoint."""

    def __init__(self, script: Script, faults: list[Fault], noise: Noise | None = None) -> None:
        self.script = script
        self.noise = noise or Noise(script.scenario.id, 0)
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
        tier = WIRE_MODELS.get(model, "small")
        reply = self.script.reply(tier, req)
        if reply is None:
            reply = self.fallback._default(req)
        reply = self.noise.apply(tier, req, reply)
        used = prompt_tokens(f"openai/{model}", body["messages"], body.get("tools"))
        return httpx.Response(200, json=chat_body(reply, model, used))


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
    import app.runs.executor as executor

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
