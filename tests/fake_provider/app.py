"""A small OpenAI-compatible chat completions server: streaming (SSE) and tool calls.

Configured into Foreman through ``api_base`` exactly as llama.cpp, vLLM or Ollama are. By
default it answers Foreman's own prompts with the scripted models' reasoning (so whole runs
work over a real socket) and any other prompt generically: the first offered tool is called
with arguments built from its schema, a JSON Schema reply is an instance of the schema.
``POST /_control`` queues replies that misbehave on purpose and sets the first-token delay;
``GET /_control/requests`` returns what it was sent.

    uvicorn tests.fake_provider.app:app --port 8999
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from app.llm import scripted
from graphs.ports import ModelRequest

MODEL = "fake-model"
SCHEMA_ROLES = {"TaskLedgerOut": "manager.plan", "ProgressLedgerOut": "manager.progress",
                "VerdictOut": "manager.verify"}
PROMPT_ROLES = (("Write the task ledger", "manager.plan"),
                ("Write the final answer", "manager.final"),
                ("Before the request is declared done", "manager.verify"))


class Scripted(BaseModel):
    """One queued reply. ``cut_after`` stops the stream after that many chunks (no finish);
    ``repeat`` sends the content that many times; ``status`` answers with an HTTP error."""

    content: str | None = None
    tool_calls: list[dict[str, str]] = Field(default_factory=list)  # name, raw arguments
    cut_after: int | None = None
    repeat: int = 1
    status: int | None = None
    completion_tokens: int | None = None
    role: str | None = None  # only for a request from this Foreman role (prefix), if set


class Control(BaseModel):
    """``POST /_control``: replies to send next (then back to default), delays, a reset."""

    replies: list[Scripted] = Field(default_factory=list)
    first_token_delay_ms: float | None = None
    chunk_delay_ms: float | None = None
    reset: bool = False


class State:
    def __init__(self) -> None:
        self.replies: list[Scripted] = []
        self.requests: list[dict[str, Any]] = []
        self.first_token_delay_s = float(os.environ.get("FAKE_FIRST_TOKEN_DELAY_MS", "0")) / 1000
        self.chunk_delay_s = float(os.environ.get("FAKE_CHUNK_DELAY_MS", "0")) / 1000
        self.first_token_at: list[float] = []  # wall-clock time of each stream's first token


state = State()
app = FastAPI(title="fake OpenAI-compatible provider")


def example(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """An instance of a JSON Schema (enough of one to validate)."""
    if "$ref" in schema:
        return example(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return example(schema[key][0], defs)
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: example(v, defs) for k, v in props.items()}
    if kind == "array":
        return [example(schema.get("items", {}), defs)]
    return {"integer": 5, "number": 5, "boolean": True, "null": None}.get(kind, "ping")


def _role(body: dict[str, Any]) -> str | None:
    """Which Foreman role sent this (None for a prompt that is not Foreman's)."""
    messages = body["messages"]
    if not messages or messages[0].get("role") != "system":
        return None
    system = str(messages[0].get("content") or "")
    if body.get("tools"):
        return "specialist." + system.split('"', 2)[1] if '"' in system else None
    fmt = body.get("response_format") or {}
    name = (fmt.get("json_schema") or {}).get("name")
    if name in SCHEMA_ROLES:
        return SCHEMA_ROLES[name]
    last = str(messages[-1].get("content") or "")
    for marker, role in PROMPT_ROLES:
        if marker in last:
            return role
    return "manager.progress" if fmt else "manager.final"


def answer(body: dict[str, Any]) -> Scripted:
    """The default reply to a request."""
    role = _role(body)
    if role is not None:
        raw = json.dumps(body, sort_keys=True).encode()
        req = ModelRequest(role=role, messages=body["messages"],
                           call_key=hashlib.sha256(raw).hexdigest())
        reply = scripted.ScriptedProvider()._default(req)
        return Scripted(content=reply.content, tool_calls=[
            {"name": c.name, "arguments": c.arguments} for c in reply.tool_calls])
    tools = body.get("tools") or []
    if tools and body["messages"][-1].get("role") != "tool":
        fn = tools[0]["function"]
        args = example(fn.get("parameters") or {}, fn.get("parameters", {}).get("$defs", {}))
        return Scripted(tool_calls=[{"name": fn["name"], "arguments": json.dumps(args)}])
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema = fmt["json_schema"]["schema"]
        return Scripted(content=json.dumps(example(schema, schema.get("$defs", {}))))
    if fmt.get("type") == "json_object":
        return Scripted(content=json.dumps({"answer": "ok"}))
    return Scripted(content="ok: the fake provider answered in a few words.")


def _usage(body: dict[str, Any], reply: Scripted, content: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4 + 1
    done = reply.completion_tokens or (len(content) + sum(
        len(c["arguments"]) for c in reply.tool_calls)) // 4 + 1
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def _calls(reply: Scripted, n: int) -> list[dict[str, Any]]:
    return [{"index": i, "id": f"call_{n}_{i}", "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}}
            for i, c in enumerate(reply.tool_calls)]


def _queued(body: dict[str, Any]) -> Scripted | None:
    """The first queued reply meant for this request (by role, when it names one)."""
    role = _role(body) or ""
    for i, reply in enumerate(state.replies):
        if reply.role is None or role.startswith(reply.role):
            return state.replies.pop(i)
    return None


@app.get("/v1/models")
async def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "fake"}]}


@app.post("/_control")
async def control(body: Control) -> dict[str, Any]:
    if body.reset:
        state.replies.clear()
        state.requests.clear()
        state.first_token_at.clear()
    state.replies.extend(body.replies)
    if body.first_token_delay_ms is not None:
        state.first_token_delay_s = body.first_token_delay_ms / 1000
    if body.chunk_delay_ms is not None:
        state.chunk_delay_s = body.chunk_delay_ms / 1000
    return {"queued": len(state.replies)}


@app.get("/_control/requests")
async def requests() -> dict[str, Any]:
    return {"requests": state.requests, "first_token_at": state.first_token_at}


@app.post("/v1/chat/completions")
async def completions(request: Request) -> Response:
    body = await request.json()
    state.requests.append(body)
    n = len(state.requests)
    reply = _queued(body) or answer(body)
    if reply.status is not None:
        return JSONResponse({"error": {"message": "scripted failure", "type": "server_error"}},
                            status_code=reply.status)
    content = (reply.content or "") * reply.repeat if reply.content is not None else None
    if body.get("stream"):
        return StreamingResponse(_stream(body, reply, content, n),
                                 media_type="text/event-stream")
    await asyncio.sleep(state.first_token_delay_s)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reply.tool_calls:
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"}
                                 for c in _calls(reply, n)]
    return JSONResponse({
        "id": f"chatcmpl-fake-{n}", "object": "chat.completion", "created": int(time.time()),
        "model": MODEL, "choices": [{"index": 0, "message": message, "logprobs": None,
                                     "finish_reason": "tool_calls" if reply.tool_calls
                                     else "stop"}],
        "usage": _usage(body, reply, content or "")})


async def _stream(body: dict[str, Any], reply: Scripted, content: str | None,
                  n: int) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta,
                                             "finish_reason": finish}]
        data = {"id": f"chatcmpl-fake-{n}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": MODEL, "choices": choices, **extra}
        return f"data: {json.dumps(data)}\n\n"

    pieces: list[str] = []
    text = content or ""
    for i in range(0, len(text), 8):
        pieces.append(chunk({"content": text[i:i + 8]}))
    for call in _calls(reply, n):
        pieces.append(chunk({"tool_calls": [call]}))
    await asyncio.sleep(state.first_token_delay_s)
    yield chunk({"role": "assistant", "content": ""})
    for i, piece in enumerate(pieces):
        if reply.cut_after is not None and i >= reply.cut_after:
            return  # the connection ends mid-reply: no finish reason, no [DONE]
        if i == 0:
            state.first_token_at.append(time.time())
        yield piece
        if state.chunk_delay_s:
            await asyncio.sleep(state.chunk_delay_s)
    if reply.cut_after is not None:
        return
    yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield chunk(None, usage=_usage(body, reply, text))
    yield "data: [DONE]\n\n"
