"""Provider faults × roles: whatever the model endpoint does to one role, the run ends.

Every role (manager planner, progress, verifier, final answer, specialist) is routed to
OpenAI-compatible deployments that respx serves at the HTTP level, so the real litellm
client path runs: retries, fallbacks, circuit breaker, the budget holds. For each role and
fault (429, 500, 503, read timeout, a truncated JSON body, a slow answer, a stream cut off
mid-reply, a slow stream) the fault hits either the role's first call only or every call of
that role. The run must end (success, or ``error`` with a reason; never left running and
never hanging) within a bound; a fault on the first call only must be recovered from.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import respx

from app.llm.scripted import ScriptedProvider
from app.llm.stream import TokenDelta, token_receiver
from app.services import open_services
from evals.faults import API_BASE, DUMMY_KEY, KEY_ENV, chat_body, role_of, wire_settings
from graphs.ports import ModelRequest
from tests.conftest import make_settings
from tests.fakes import HashingEmbedder
from tests.verify.record import record, scale

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
ROLES = ["manager.plan", "manager.progress", "specialist", "manager.verify", "manager.final"]
FAULTS = ["http_429", "http_500", "http_503", "timeout", "truncated_json", "slow",
          "stream_cut", "stream_slow"]
RUN_BOUND_S = 120.0


class Endpoint:
    """The respx side effect: scripted answers, with the fault due for this call."""

    def __init__(self, role: str, fault: str, always: bool) -> None:
        self.role, self.fault, self.always = role, fault, always
        self.seen: collections.Counter[str] = collections.Counter()
        self.injected = 0
        self.model = ScriptedProvider()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        role = role_of(body)
        family = "specialist" if role.startswith("specialist.") else role
        self.seen[family] += 1
        due = family == self.role and (self.always or self.seen[family] == 1)
        streamed = bool(body.get("stream"))
        if due and self.fault.startswith("stream_") and not streamed:
            due = False  # a stream fault needs a streamed call
        if due:
            self.injected += 1
            if self.fault in ("slow", "stream_slow"):
                await asyncio.sleep(0.4 if self.fault == "slow" else 0.0)
            else:
                return _broken(self.fault, request, streamed)
        req = ModelRequest(role=role, messages=body["messages"],
                           call_key=hashlib.sha256(request.content).hexdigest(),
                           tools=body.get("tools"), json_output="response_format" in body)
        reply = self.model._default(req)
        if streamed:
            return _sse(reply.content or "", body.get("model", ""),
                        slow=due and self.fault == "stream_slow")
        return httpx.Response(200, json=chat_body(reply, str(body.get("model", "")), 100))


def _broken(fault: str, request: httpx.Request, streamed: bool) -> httpx.Response:
    if fault == "http_429":
        return httpx.Response(429, headers={"retry-after": "0"},
                              json={"error": {"message": "rate limited", "type": "rate_limit"}})
    if fault in ("http_500", "http_503"):
        return httpx.Response(int(fault[-3:]), json={"error": {"message": "server error"}})
    if fault == "timeout":
        raise httpx.ReadTimeout("read timed out", request=request)
    if fault == "stream_cut" and streamed:
        return _sse("The refund of $189.00 for order O-5002", "m", cut=True)
    return httpx.Response(200, headers={"content-type": "application/json"},
                          content=b'{"id": "chatcmpl-x", "object": "chat.completion", "choi')


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1,
            "model": model, "choices": [{"index": 0, "delta": delta,
                                         "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


def _sse(text: str, model: str, *, cut: bool = False, slow: bool = False) -> httpx.Response:
    words = text.split(" ")

    async def chunks() -> AsyncIterator[bytes]:
        yield _chunk(model, {"role": "assistant", "content": ""})
        for i, w in enumerate(words):
            if slow:
                await asyncio.sleep(0.05)
            yield _chunk(model, {"content": (" " if i else "") + w})
        if not cut:
            yield _chunk(model, {}, "stop")
            yield b"data: [DONE]\n\n"

    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          stream=_Stream(chunks()))


class _Stream(httpx.AsyncByteStream):
    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self.source = source

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self.source:
            yield piece


async def run_one(role: str, fault: str, always: bool, root: Path,
                  monkeypatch: Any) -> dict[str, Any]:
    monkeypatch.setenv(KEY_ENV, DUMMY_KEY)
    settings = wire_settings(make_settings(root))
    endpoint = Endpoint(role, fault, always)
    deltas: list[TokenDelta] = []
    started = time.perf_counter()
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        mock.post(f"{API_BASE}/chat/completions").mock(side_effect=endpoint)
        async with open_services(settings, embedder=HashingEmbedder()) as s:
            token_receiver.set(deltas.append)  # the final answer streams, as on the API
            try:
                result = await asyncio.wait_for(s.runner.start(TASK, "support"), RUN_BOUND_S)
            except TimeoutError:
                return {"ended": False, "status": "hung", "injected": endpoint.injected}
            finally:
                token_receiver.set(None)
            stored = s.store.get_run(result.run_id)
            types = [e["type"] for e in s.store.events(result.run_id, 0, 100_000)]
    return {"ended": True, "status": result.status, "error": result.error,
            "stored": stored.status if stored else None, "injected": endpoint.injected,
            "last": types[-1] if types else None, "wall_s": time.perf_counter() - started,
            "calls": sum(endpoint.seen.values())}


def matrix() -> list[tuple[str, str, bool]]:
    return [(r, f, a) for f in FAULTS for r in ROLES for a in (False, True)
            if not (f.startswith("stream_") and r != "manager.final")]


async def test_provider_faults_every_run_ends(tmp_path: Path, monkeypatch: Any) -> None:
    cells = matrix()
    n = scale(fast=4, full=len(cells))
    chosen = cells if n >= len(cells) else [cells[(i * 7) % len(cells)] for i in range(n)]
    failures, outcomes = [], collections.Counter[str]()
    for i, (role, fault, always) in enumerate(chosen):
        out = await run_one(role, fault, always, tmp_path / f"run-{i}", monkeypatch)
        ok = (out["ended"] and out["injected"] > 0 and out["stored"] == out["status"]
              and out["status"] in ("success", "error")
              and out["last"] in ("run_completed", "run_failed")
              and (out["status"] == "success" or bool(out["error"]))
              and (always or out["status"] == "success"))
        outcomes[f"{'every call' if always else 'first call'}: {out['status']}"] += 1
        print(f"{role:18} {fault:15} {'always' if always else 'once':6} {out}",
              file=sys.stderr)
        if not ok:
            failures.append((role, fault, always, out))
    record("provider faults × roles", len(chosen), len(failures),
           "429, 500, 503, read timeout, truncated JSON, slow answer, cut and slow streams, on "
           "each role's first call or on every call, through litellm's HTTP path: every run "
           "ends (success, or error with a reason), none hangs, a first-call fault is "
           f"recovered from; outcomes: {dict(sorted(outcomes.items()))}")
    assert not failures, failures
