"""OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models``: a team is a model.

The last user message is the task (or the follow-up on a thread named by the
``X-Foreman-Thread-Id`` header or ``metadata.thread_id``). Streaming sends progress as
``reasoning_content`` deltas (shown as "thinking" by chat UIs) while the run works, and the
final answer as ``content`` deltas as the model produces it (docs/models.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from app.api.auth import Principal, PrincipalDep, Requester
from app.api.deps import Api, ApiDep
from app.api.events import follow_tokens, sse
from app.api.schemas import check_task, text_of
from app.api.token_parts import unstreamed
from app.errors import InvalidRequest, NotFound
from app.llm.stream import TokenDelta
from app.runs.runner import new_thread_id
from app.storage.store import RunRow
from app.storage.thread_keys import local_id, thread_key

router = APIRouter(tags=["chat"])
THREAD_HEADER = "X-Foreman-Thread-Id"


class ChatMessage(BaseModel):
    """One message; only the text of the last user message is used."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    """``stream_options``."""

    include_usage: bool = False


class ChatRequest(BaseModel):
    """The subset of the OpenAI request Foreman reads; other fields are accepted and ignored."""

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = None


def _model(team: str) -> dict[str, Any]:
    return {"id": team, "object": "model", "created": 1_735_689_600, "owned_by": "foreman"}


@router.get("/v1/models")
async def list_models(api: ApiDep, principal: PrincipalDep) -> dict[str, Any]:
    """One model per team."""
    return {"object": "list", "data": [_model(t) for t in api.services.settings.teams]}


@router.get("/v1/models/{model}")
async def get_model(model: str, api: ApiDep, principal: PrincipalDep) -> dict[str, Any]:
    """One team as a model."""
    if model not in api.services.settings.teams:
        raise NotFound(f"model {model!r} not found; models are team names")
    return _model(model)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, api: ApiDep, principal: Requester,
                           x_foreman_thread_id: Annotated[str | None, Header()] = None,
                           ) -> JSONResponse | EventSourceResponse:
    """Run the task on the team named by ``model``; answer (or stream) when it ends or pauses."""
    if body.model not in api.services.settings.teams:
        raise NotFound(f"model {body.model!r} not found; models are team names")
    user = [m for m in body.messages if m.role == "user"]
    if not user:
        raise InvalidRequest("messages holds no user message", field="messages")
    task = check_task(text_of(user[-1].content), "messages")
    thread_id = x_foreman_thread_id or (body.metadata or {}).get("thread_id") or new_thread_id()
    api.thread_id_ok(thread_id)
    key = await api.off_loop(_admit, api, principal, thread_id)
    run = await api.manager.astart(task=task, team=body.model, thread_id=key,
                                   tenant=principal.tenant, created_by=principal.name,
                                   metadata={"source": "chat"})
    headers = {THREAD_HEADER: thread_id}
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        # Subscribed before the run's task first runs: no delta of its answer is missed.
        tokens = api.broker.subscribe_tokens(run.id)
        return sse(_chunks(api, run, usage, tokens), headers=headers)
    done = await api.manager.wait(run.id, api.services.settings.runs.wait_timeout_s)
    answer, extra = await _outcome(api, done)
    return JSONResponse({
        "id": f"chatcmpl-{run.id}", "object": "chat.completion", "created": int(time.time()),
        "model": body.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": extra.pop("usage"), "foreman": extra}, headers=headers)


def _admit(api: Api, principal: Principal, thread_id: str) -> str:
    """The key of the tenant's own thread of that id, or of a new one (another tenant's is
    not seen); ``Conflict`` when the thread waits for a decision."""
    thread = api.services.store.get_thread(principal.tenant, thread_id)
    if thread is None:
        return thread_key(principal.tenant, thread_id)
    api.services.approvals.check_no_pending(thread.key)
    return thread.key


async def _outcome(api: Api, run: RunRow) -> tuple[str, dict[str, Any]]:
    """The assistant text for a finished or paused run, and the ``foreman`` object."""
    totals = await api.off_loop(api.services.store.totals, run.id)
    approvals: list[str] = []
    if run.status == "success" or (run.status == "error" and run.final_answer):
        text = run.final_answer or ""  # a run that did not do its task still answers why
    elif run.status == "interrupted" and run.stop_reason != "cancelled":
        pending = await api.services.runner.pending_interrupts(run.thread_id, run.team)
        approvals = [str(p.value.get("approval_id") or p.id) for p in pending]
        text = "\n".join(waiting_text(p.value) for p in pending) or "The run is paused."
    elif run.status == "error":
        text = f"The run failed: {run.error or 'unknown error'}"
    elif run.status == "interrupted":
        text = "The run was cancelled."
    else:
        text = f"The run is still {run.status}; follow it on thread {local_id(run.thread_id)}."
    usage = {"prompt_tokens": totals.prompt_tokens,
             "completion_tokens": totals.completion_tokens,
             "total_tokens": totals.prompt_tokens + totals.completion_tokens}
    return text, {"thread_id": local_id(run.thread_id), "run_id": run.id, "status": run.status,
                  "stop_reason": run.stop_reason,
                  "approvals": approvals, "cost_usd": totals.cost_usd, "usage": usage}


def waiting_text(value: Mapping[str, Any]) -> str:
    """What waits for whose approval, and where to decide it."""
    req = value.get("action_request") or {}
    who = value.get("approver_group") or "an approver"
    args = json.dumps(req.get("args"), default=str)
    return (f"Waiting for approval: {value.get('agent', 'an agent')} wants to call "
            f"{req.get('action')} with {args}. It needs approval from {who} "
            f"(approval {value.get('approval_id')}, policy rule {value.get('policy_rule')}). "
            "Decide it in the inbox at /inbox or via /v1/approvals.")


def progress_line(kind: str, data: Mapping[str, Any]) -> str | None:
    """One readable progress line for a chat UI, or None for events not worth showing."""
    if kind == "plan_created":
        steps = "; ".join(f"{s['agent']}: {s['goal']}" for s in data["ledger"]["plan"])
        return f"Plan: {steps}"
    if kind == "agent_started":
        return f"{data['agent']} → {data['instruction']}"
    if kind == "tool_called":
        return f"  {data['tool']}…"
    if kind == "agent_finished":
        return f"{data['agent']} done: {str(data['summary'])[:200]}"
    if kind == "approval_requested":
        return f"Waiting for approval of {data.get('action')} ({data.get('approval_id')})"
    if kind == "replanned":
        return "Replanning"
    if kind == "run_failed":
        return f"Run failed: {data.get('reason')}"
    return None


RETRY_NOTE = "\n\n(The model's reply was cut off; the answer from a new attempt follows.)\n\n"


def rest_of(answer: str, streamed: str) -> str:
    """What the client still needs once ``streamed`` went out as the answer's content."""
    if not streamed:
        return answer
    rest = unstreamed(answer, streamed)
    if rest is not None:
        return rest
    return "\n\n" + answer  # the run's answer differs from what the model streamed


async def _chunks(api: Api, run: RunRow, include_usage: bool,
                  tokens: asyncio.Queue[TokenDelta],
                  ) -> AsyncIterator[dict[str, Any]]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None,
              **extra: Any) -> dict[str, Any]:
        body = {"id": f"chatcmpl-{run.id}", "object": "chat.completion.chunk",
                "created": created, "model": run.team,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return {"data": json.dumps(body, default=str)}

    yield chunk({"role": "assistant", "content": ""})
    streamed, attempt = "", None
    async for item in follow_tokens(api, run.id, tokens):
        if isinstance(item, TokenDelta):
            if attempt is not None and item.attempt != attempt and streamed:
                yield chunk({"content": RETRY_NOTE})
                streamed = ""
            attempt = item.attempt
            streamed += item.text
            yield chunk({"content": item.text})
            continue
        line = progress_line(item["type"], item["data"])
        if line:
            yield chunk({"reasoning_content": line + "\n"})
    done = await api.manager.wait(run.id, limit_s=0)
    answer, extra = await _outcome(api, done)
    usage = extra.pop("usage")
    rest = rest_of(answer, streamed)
    if rest:
        yield chunk({"content": rest})
    yield chunk({}, "stop", foreman=extra)
    if include_usage:
        yield {"data": json.dumps({"id": f"chatcmpl-{run.id}", "object": "chat.completion.chunk",
                                   "created": created, "model": run.team, "choices": [],
                                   "usage": usage})}
    yield {"data": "[DONE]"}
