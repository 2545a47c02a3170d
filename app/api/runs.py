"""Runs on a thread: background, wait, stream, get, join, cancel (LangGraph Platform shape)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from app.api.auth import Principal, PrincipalDep
from app.api.deps import Api, ApiDep, RunId, ThreadId
from app.api.events import follow, follow_tokens, parse_event_id, sse
from app.api.schemas import RunCreate, task_from_input
from app.api.token_parts import TOKEN_MODES, TokenParts, check_modes
from app.api.views import run_json, wait_result
from app.errors import Forbidden, InvalidRequest, NotFound
from app.llm.stream import TokenDelta
from app.observability.webhooks import check_url
from app.runs.run_manager import RunManager
from app.storage.store import ACTIVE, RunRow
from app.storage.thread_keys import local_id

router = APIRouter(tags=["runs"])


async def submit(api: Api, principal: Principal, thread_id: str, body: RunCreate,
                 interactive: bool = True) -> RunRow:
    """Start (or resume) a run as the body asks, after auth and state checks (a background
    run, ``interactive=False``, queues behind the runs that clients wait for). The checks'
    database reads run off the event loop, and so do the start's and a decision's writes."""
    key, team, task = await api.off_loop(_admit, api, principal, thread_id, body)
    resuming = body.command is not None and body.command.resume is not None
    if body.multitask_strategy == "interrupt":
        for run in await api.off_loop(api.services.store.thread_runs, key):
            if run.status in ACTIVE:
                await api.manager.cancel(run.id, wait=True)
    enqueue = body.multitask_strategy == "enqueue"
    if resuming:
        assert body.command is not None
        # Decisions go through the approvals service: same RBAC, single use and audit.
        return await api.services.approvals.decide_resume(
            principal, key, body.command.resume,
            api.manager if not enqueue else QueuedResume(api.manager))
    metadata = {**(body.metadata or {}), "multitask_strategy": body.multitask_strategy}
    if body.budget_usd is not None:
        metadata["budget_usd"] = body.budget_usd
    if body.webhook is not None:
        metadata["webhook"] = check_url(body.webhook, allow_private=api.services.settings
                                        .webhooks.allow_private_targets)
    return await api.manager.astart(task=task, team=team, thread_id=key,
                                    tenant=principal.tenant, created_by=principal.name,
                                    metadata=metadata, enqueue=enqueue,
                                    shadow=body.mode == "shadow", interactive=interactive)


def _admit(api: Api, principal: Principal, thread_id: str,
           body: RunCreate) -> tuple[str, str, str]:
    """Every check before anything is cancelled, stored or started: (the thread's key, the
    team, the task; empty when resuming)."""
    store = api.services.store
    if body.if_not_exists == "create" and store.get_thread(principal.tenant, thread_id) is None:
        if not principal.has("requester"):
            raise Forbidden("creating a thread needs role requester")
        api.thread_id_ok(thread_id)
        store.create_thread(thread_id, principal.tenant)
    key = api.thread(thread_id, principal).key  # the thread's name in every table
    team = api.team_of(body.assistant_id)
    if body.multitask_strategy == "rollback":
        raise InvalidRequest("multitask_strategy rollback is not supported",
                             field="multitask_strategy")
    if body.command is not None and body.command.resume is not None:
        return key, team, ""
    if not principal.has("requester"):
        raise Forbidden("starting a run needs role requester")
    if body.input is None:
        raise InvalidRequest("send input (a new task) or command.resume", field="input")
    task = task_from_input(body.input)
    if body.multitask_strategy != "enqueue":  # enqueue waits behind the approval
        api.services.approvals.check_no_pending(key)
    cap = api.services.settings.budgets.run_usd
    if body.budget_usd is not None and cap is not None and body.budget_usd > cap:
        raise InvalidRequest(f"budget_usd may lower the configured run budget (${cap}), "
                             "not raise it; a run that needs more asks for a budget "
                             "extension", field="budget_usd")
    return key, team, task


class QueuedResume:
    """``multitask_strategy=enqueue``: a resume waits for the thread instead of a 409."""

    def __init__(self, manager: RunManager) -> None:
        self.manager = manager

    def check(self, run: RunRow) -> None:
        """Always admissible: the run manager queues it behind the thread's active run."""

    def admitting(self, thread_id: str) -> AbstractAsyncContextManager[None]:
        """The run manager's admission lock for the thread."""
        return self.manager.admitting(thread_id)

    async def resume(self, run: RunRow, decisions: dict[str, Any]) -> None:
        """Queue the resume."""
        await self.manager.resume(run, decisions)


def _stream_start(api: Api, principal: Principal, thread_id: str,
                  body: RunCreate) -> tuple[RunRow | None, int]:
    """The thread's latest run and, for a resume (which continues that same run and streams
    only what happens from now on), its last event's sequence number."""
    store = api.services.store
    thread = store.get_thread(principal.tenant, thread_id)
    latest = store.latest_run(thread.key) if thread is not None else None
    if body.command is None or latest is None:
        return latest, 0
    events = store.events(latest.id, 0, limit=100_000)
    return latest, events[-1]["seq"] if events else 0


@router.post("/threads/{thread_id}/runs")
async def create_run(thread_id: ThreadId, body: RunCreate, api: ApiDep,
                     principal: PrincipalDep) -> dict[str, Any]:
    """Start a run in the background."""
    run = await submit(api, principal, thread_id, body, interactive=False)
    return await api.off_loop(run_json, api, run)


@router.get("/threads/{thread_id}/runs")
async def list_runs(thread_id: ThreadId, api: ApiDep, principal: PrincipalDep,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
                    offset: Annotated[int, Query(ge=0)] = 0) -> list[dict[str, Any]]:
    """The thread's runs, newest first."""
    def page() -> list[dict[str, Any]]:
        thread = api.thread(thread_id, principal)
        runs = list(reversed(api.services.store.thread_runs(thread.key)))
        return [run_json(api, r) for r in runs[offset: offset + limit]]

    return await api.off_loop(page)


@router.post("/threads/{thread_id}/runs/wait")
async def wait_run(thread_id: ThreadId, body: RunCreate, api: ApiDep,
                   principal: PrincipalDep) -> JSONResponse:
    """Start a run and answer with the thread's values when it ends or pauses."""
    run = await submit(api, principal, thread_id, body)
    done = await api.manager.wait(run.id, api.services.settings.runs.wait_timeout_s)
    return JSONResponse(await wait_result(api, done), headers={
        "Location": f"/threads/{thread_id}/runs/{run.id}/join",
        "Content-Location": f"/threads/{thread_id}/runs/{run.id}"})


@router.post("/threads/{thread_id}/runs/stream")
async def stream_run(thread_id: ThreadId, body: RunCreate, api: ApiDep,
                     principal: PrincipalDep) -> EventSourceResponse:
    """Start a run and stream it (``metadata``, ``updates``, ``custom``, ``values``,
    ``messages``/``messages-tuple`` token chunks, ``end``)."""
    modes = check_modes(body.modes())
    latest, before = await api.off_loop(_stream_start, api, principal, thread_id, body)
    resuming = body.command is not None and latest is not None
    tokens = (api.broker.subscribe_tokens(latest.id)
              if resuming and latest and TOKEN_MODES & set(modes) else None)
    try:
        run = await submit(api, principal, thread_id, body)
    except BaseException:
        if tokens is not None and latest is not None:
            api.broker.unsubscribe_tokens(latest.id, tokens)
        raise
    if tokens is None and TOKEN_MODES & set(modes):
        tokens = api.broker.subscribe_tokens(run.id)  # before the run's task first runs
    return sse(platform_stream(api, run, modes, (before, 0), fresh=True, tokens=tokens), headers={
        "Location": f"/threads/{thread_id}/runs/{run.id}/stream",
        "Content-Location": f"/threads/{thread_id}/runs/{run.id}"})


@router.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(thread_id: ThreadId, run_id: RunId, api: ApiDep,
                  principal: PrincipalDep) -> dict[str, Any]:
    """One run."""
    return await api.off_loop(lambda: run_json(api, *api.run_totals(thread_id, run_id,
                                                                      principal)))


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(thread_id: ThreadId, run_id: RunId, api: ApiDep,
                   principal: PrincipalDep) -> dict[str, Any]:
    """Wait for the run to end or pause; the thread's values."""
    await api.arun(thread_id, run_id, principal)
    done = await api.manager.wait(run_id, api.services.settings.runs.wait_timeout_s)
    return await wait_result(api, done)


@router.get("/threads/{thread_id}/runs/{run_id}/stream")
async def join_stream(thread_id: ThreadId, run_id: RunId, api: ApiDep,
                      principal: PrincipalDep,
                      last_event_id: Annotated[str | None, Header()] = None,
                      stream_mode: Annotated[list[str] | None, Query()] = None,
                      ) -> EventSourceResponse:
    """Replay the run's stream from the start, or after ``Last-Event-ID``, then follow it."""
    run = await api.arun(thread_id, run_id, principal)
    modes = check_modes(stream_mode or ["values", "updates", "custom"])
    tokens = api.broker.subscribe_tokens(run.id) if TOKEN_MODES & set(modes) else None
    return sse(platform_stream(api, run, modes, parse_event_id(last_event_id),
                               fresh=last_event_id is None, tokens=tokens))


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(thread_id: ThreadId, run_id: RunId, api: ApiDep, principal: PrincipalDep,
                     wait: Annotated[bool, Query()] = False,
                     action: Annotated[str, Query(pattern="^(interrupt|rollback)$")] = "interrupt",
                     ) -> dict[str, Any]:
    """Stop the run; its checkpoints stay, so the thread can continue."""
    run = await api.arun(thread_id, run_id, principal)
    if not principal.has("requester"):
        raise Forbidden("cancelling a run needs role requester or admin")
    if action == "rollback":
        raise InvalidRequest("action rollback is not supported", field="action")
    return await api.off_loop(run_json, api, await api.manager.cancel(run.id, wait=wait))


async def platform_stream(api: Api, run: RunRow, modes: list[str], after: tuple[int, int],
                          fresh: bool, tokens: asyncio.Queue[TokenDelta] | None = None,
                          ) -> AsyncIterator[dict[str, Any]]:
    """Stored events as Platform stream parts; ids are ``<seq>.<part>`` for reconnects.

    Token chunks are live only (never stored): they carry no id, so a reconnect does not
    replay them; the final message arrives in ``values`` and ``run_completed`` anyway.
    """
    if fresh:
        yield {"event": "metadata", "id": f"{after[0]}.0",
               "data": json.dumps({"run_id": run.id, "thread_id": local_id(run.thread_id),
                                   "attempt": 1})}
    last = after[0]
    token_parts = TokenParts(run, modes)
    source = (follow(api, run.id, after[0]) if tokens is None
              else follow_tokens(api, run.id, tokens, after[0]))
    async for e in source:
        if isinstance(e, TokenDelta):
            for event, data in token_parts.parts(e):
                yield {"event": event, "data": json.dumps(data, default=str)}
            continue
        seq, last = e["seq"], e["seq"]
        parts: list[tuple[str, Any]] = []
        if "updates" in modes:
            parts.append(("updates", {e["type"]: e["data"]}))
        if "custom" in modes:
            parts.append(("custom", {"type": e["type"], "seq": seq, "data": e["data"]}))
        if e["type"] == "run_failed":
            parts.append(("error", {"error": "RunError", "message": e["data"].get("reason")}))
        for k, (event, data) in enumerate(parts, start=1):
            if (seq, k) > after:
                yield {"event": event, "id": f"{seq}.{k}", "data": json.dumps(data, default=str)}
    done = await api.off_loop(api.services.store.get_run, run.id)
    if done is None:
        raise NotFound(f"run {run.id} vanished")
    for event, data in [*token_parts.rest(done.final_answer), *token_parts.complete()]:
        yield {"event": event, "data": json.dumps(data, default=str)}
    if "values" in modes and (done.status != "error" or done.final_answer) and (
            last, 8) > after:
        values = await wait_result(api, done)
        yield {"event": "values", "id": f"{last}.8", "data": json.dumps(values, default=str)}
    yield {"event": "end", "id": f"{last}.9", "data": "null"}
