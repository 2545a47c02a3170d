"""``foreman models check``: what each configured model can actually do, asked of the model.

Per model: key present, reachable, a tool call round trip, JSON (Schema where the catalog
says the model takes it, JSON mode otherwise), streaming, price known, context window. Each
probe is one small call bounded by the model's timeout; a failed probe says why.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from app.config.settings import ModelEntry, Settings
from app.llm.catalog import Catalog, CatalogModel
from app.llm.litellm_provider import LiteLLMProvider
from app.llm.provider import ProviderFault, ProviderReply
from graphs.errors import ModelCallError
from graphs.ports import ModelRequest

CHECK_TOOL = {"type": "function", "function": {
    "name": "record_number", "description": "Record one whole number.",
    "parameters": {"type": "object", "properties": {"value": {"type": "integer"}},
                   "required": ["value"]}}}
ANSWER_SCHEMA = {"title": "Answer", "type": "object", "required": ["answer"],
                 "properties": {"answer": {"type": "integer"}}}
PROBE_TOKENS = 64


@dataclass
class Probe:
    """One capability: passed or not, and what was seen."""

    ok: bool | None  # None: not tried (e.g. no key)
    detail: str


@dataclass
class ModelReport:
    """Everything checked for one model."""

    name: str
    litellm_model: str
    tier: str
    roles: list[str]
    api_base: str | None
    probes: dict[str, Probe] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No probe failed."""
        return all(p.ok is not False for p in self.probes.values())

    def to_json(self) -> dict[str, Any]:
        """Plain JSON shape (``--json``)."""
        return {"name": self.name, "litellm_model": self.litellm_model, "tier": self.tier,
                "roles": self.roles, "api_base": self.api_base, "ok": self.ok,
                "checks": {k: asdict(v) for k, v in self.probes.items()}}


def _key(entry: ModelEntry) -> Probe:
    if entry.api_key_env and os.environ.get(entry.api_key_env):
        return Probe(True, f"{entry.api_key_env} is set")
    if entry.api_base and not entry.api_key_env:
        return Probe(True, f"none needed (local server at {entry.api_base})")
    if entry.api_key_env:
        return Probe(False, f"{entry.api_key_env} is not set")
    return Probe(False, "no api_key_env configured")


def _price(model: CatalogModel) -> Probe:
    source = "foreman.yaml" if model.entry.input_cost_per_mtok is not None else "litellm's map"
    return Probe(True, f"${model.input_per_token * 1e6:g} in / ${model.output_per_token * 1e6:g}"
                       f" out per Mtok ({source})")


def _why(error: BaseException) -> str:
    if isinstance(error, ProviderFault):
        return f"{error.kind}: {error}"
    if isinstance(error, TimeoutError):
        return "no answer in time"
    return f"{type(error).__name__}: {error}"[:200]


class Checker:
    """Runs the probes for one model through the same provider runs use."""

    def __init__(self, model: CatalogModel, provider: LiteLLMProvider) -> None:
        self.model = model
        self.entry = model.entry.model_copy(update={"max_tokens": PROBE_TOKENS})
        self.provider = provider

    async def _ask(self, messages: list[dict[str, Any]], **kw: Any) -> ProviderReply:
        request = ModelRequest(role="check", messages=messages, call_key="check", **kw)
        return await asyncio.wait_for(self.provider.complete(self.entry, request),
                                      self.entry.timeout_s)

    async def reachable(self) -> Probe:
        started = time.perf_counter()
        reply = await self._ask([{"role": "user", "content": "Reply with the word: ready"}])
        ms = (time.perf_counter() - started) * 1000
        text = (reply.content or "").strip()
        if not text:
            return Probe(False, f"answered with an empty reply in {ms:.0f} ms")
        return Probe(True, f"answered in {ms:.0f} ms")

    async def tools(self) -> Probe:
        if not self.model.tools:
            return Probe(None, "not supported by configuration (supports_tools: false)")
        ask = [{"role": "user", "content": "Call the record_number tool with value 7."}]
        reply = await self._ask(ask, tools=[CHECK_TOOL])
        call = next((c for c in reply.tool_calls if c.name == "record_number"), None)
        if call is None:
            text = (reply.content or "").strip()[:80]
            return Probe(False, f"no record_number tool call (answered {text!r})")
        try:
            args = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            return Probe(False, f"arguments are not JSON: {call.arguments[:80]!r}")
        call_id = call.id or "call_1"
        said: dict[str, Any] = {"role": "assistant", "content": reply.content, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}}]}
        result = {"role": "tool", "tool_call_id": call_id,
                  "content": json.dumps({"recorded": args.get("value")})}
        back = [*ask, said, result]
        after = await self._ask(back, tools=[CHECK_TOOL])
        if not (after.content or "").strip() and not after.tool_calls:
            return Probe(False, "no answer after the tool result")
        return Probe(True, f"called record_number({json.dumps(args)}), answered after it")

    async def json_output(self) -> Probe:
        mode = "JSON Schema" if self.model.json_schema else "JSON mode"
        reply = await self._ask(
            [{"role": "user", "content": 'What is 2 + 3? Answer only with JSON like '
                                         '{"answer": <integer>}.'}],
            json_output=True, json_schema=ANSWER_SCHEMA)
        try:
            data = json.loads(reply.content or "")
        except json.JSONDecodeError:
            return Probe(False, f"{mode}: not JSON: {(reply.content or '')[:60]!r}")
        if not isinstance(data, dict) or not isinstance(data.get("answer"), int):
            return Probe(False, f"{mode}: JSON without an integer answer: {str(data)[:60]}")
        return Probe(True, f"{mode}: {json.dumps(data)}")

    async def streaming(self) -> Probe:
        deltas: list[float] = []
        started = time.perf_counter()
        request = ModelRequest(role="check", call_key="check", messages=[
            {"role": "user", "content": "Count from 1 to 5, separated by spaces."}])
        reply = await asyncio.wait_for(self.provider.stream(
            self.entry, request, lambda text: deltas.append(time.perf_counter())),
            self.entry.timeout_s)
        if not deltas:
            return Probe(False, "the stream carried no content")
        first = (deltas[0] - started) * 1000
        return Probe(True, f"{len(deltas)} deltas, first after {first:.0f} ms, "
                           f"{reply.completion_tokens} tokens")

    async def run(self, report: ModelReport) -> None:
        for name, probe in (("reachable", self.reachable), ("tools", self.tools),
                            ("json", self.json_output), ("streaming", self.streaming)):
            try:
                report.probes[name] = await probe()
            except (ModelCallError, TimeoutError, OSError) as e:
                report.probes[name] = Probe(False, _why(e))
            if name == "reachable" and not report.probes[name].ok:
                for rest in ("tools", "json", "streaming"):
                    report.probes[rest] = Probe(None, "skipped: not reachable")
                return


async def check_models(settings: Settings, names: list[str] | None = None,
                       provider: LiteLLMProvider | None = None) -> list[ModelReport]:
    """Check the routed models, and every other model that has credentials.

    A catalog model no role uses and no key unlocks is left out (it cannot be called);
    ``names`` checks just those.
    """
    catalog = Catalog(settings.models, settings.source)
    provider = provider or LiteLLMProvider()
    roles: dict[str, list[str]] = {}
    for role, name in settings.routing.roles.items():
        roles.setdefault(name, []).append(role)
    chosen = [m for m in catalog.models if not m.entry.scripted and (
        m.name in (names or []) if names else (m.name in roles or m.entry.has_credentials()))]
    reports = []
    for model in chosen:
        entry = model.entry
        report = ModelReport(entry.name, entry.litellm_model, entry.tier,
                             roles.get(entry.name, []), entry.api_base)
        report.probes["key"] = _key(entry)
        if report.probes["key"].ok:
            await Checker(model, provider).run(report)
        else:
            for rest in ("reachable", "tools", "json", "streaming"):
                report.probes[rest] = Probe(None, "skipped: no key")
        report.probes["price"] = _price(model)
        window = model.context_window
        report.probes["context"] = Probe(True if window else None,
                                         f"{window} tokens" if window else "unknown")
        reports.append(report)
    return reports
