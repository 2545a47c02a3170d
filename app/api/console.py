"""The run console: ``GET /console`` (the page) and the JSON it reads under ``/v1/runs``.

The page is a shell like the inbox; its script reads the runs list, one run's detail and
the run's timeline (stored events, redacted as the audit redacts them) with the caller's
API key, and follows a running run over SSE. The timeline is read from the store, so a run
executing in another process streams the same way. Every store read runs off the event loop
(:meth:`Api.off_loop`).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse
from sse_starlette import EventSourceResponse

from app.api.auth import Principal, PrincipalDep
from app.api.deps import Api, ApiDep, RunId
from app.api.events import follow, parse_event_id, sse
from app.api.pages import page
from app.errors import NotFound
from app.observability.webhooks import deliveries as webhook_log
from app.runs.run_reads import RunReads, console_event
from app.storage.store import RunRow, Store
from tools.spec import ToolSpec

router = APIRouter(tags=["console"])
# A person is watching: re-read the store often, for events another process writes.
CONSOLE_POLL_S = 0.2
RunStatus = Literal["pending", "running", "error", "success", "timeout", "interrupted"]
_reads: weakref.WeakKeyDictionary[Store, RunReads] = weakref.WeakKeyDictionary()


def reads(api: Api) -> RunReads:
    """The console's queries on this app's store (indexes made once)."""
    store = api.services.store
    found = _reads.get(store)
    if found is None:
        found = _reads[store] = RunReads(store, api.services.runner.registry.find)
    return found


def own_run(api: Api, run_id: str, principal: Principal) -> RunRow:
    """A run of the caller's tenant; any other is reported as missing."""
    run = api.services.store.get_run(run_id) if len(run_id) <= 128 else None
    if run is None or run.tenant != principal.tenant:
        raise NotFound(f"run {run_id} not found")
    return run


@router.get("/console", response_class=HTMLResponse, include_in_schema=False)
async def console(request: Request, api: ApiDep) -> HTMLResponse:
    """The run console: runs, and each run's plan, rounds, steps, calls, approvals, cost."""
    return page("console.html", local_mode=api.keyring.local_mode, active="/console",
                title="Foreman runs",
                statuses=["pending", "running", "interrupted", "success", "error", "timeout"])


@router.get("/v1/runs")
async def list_runs(api: ApiDep, principal: PrincipalDep,
                    status: Annotated[RunStatus | None, Query()] = None,
                    team: Annotated[str | None, Query(max_length=64)] = None,
                    limit: Annotated[int, Query(ge=1, le=200)] = 25,
                    offset: Annotated[int, Query(ge=0, le=10**7)] = 0) -> dict[str, Any]:
    """The tenant's runs, newest first: status, team, requester, start, duration, cost and
    pending approvals; filtered by status and team, one page at a time."""
    def listed() -> dict[str, Any]:
        r = reads(api)
        found = r.page(principal.tenant, status=status, team=team, limit=limit, offset=offset)
        return {"runs": found.runs, "total": found.total, "limit": limit, "offset": offset,
                "teams": r.teams(principal.tenant)}

    return await api.off_loop(listed)


@router.get("/v1/runs/{run_id}")
async def get_run(run_id: RunId, api: ApiDep, principal: PrincipalDep) -> dict[str, Any]:
    """One run: summary, task ledger with step status, approvals (and whether the caller may
    decide each), cost by tier and by agent, final answer and stop reason."""
    return await api.off_loop(_detail, api, run_id, principal)


def _detail(api: Api, run_id: str, principal: Principal) -> dict[str, Any]:
    run = own_run(api, run_id, principal)
    detail = reads(api).detail(run)
    approver = principal.has("approver")
    for a in detail["approvals"]:
        # The approvals service has the last word (separation of duties, admin rules).
        a["decidable"] = (a["status"] == "pending" and approver
                          and (a.get("requester") != principal.name or principal.local
                               or "admin" in principal.roles))
    detail["can_decide"] = approver
    detail["deliveries"] = deliveries(api, run)
    return detail


@router.get("/v1/runs/{run_id}/timeline")
async def timeline(run_id: RunId, api: ApiDep, principal: PrincipalDep,
                   last_event_id: Annotated[str | None, Header()] = None,
                   after: Annotated[int, Query(ge=0, le=10**9)] = 0,
                   follow_live: Annotated[bool, Query(alias="follow")] = True,
                   ) -> EventSourceResponse:
    """The run's events as the console shows them (SSE, ``id`` = sequence number): tool
    arguments and results redacted, untrusted tool output marked; live until the run stops."""
    tools = await api.off_loop(_tools, api, run_id, principal)
    start = max(after, parse_event_id(last_event_id)[0])

    async def stream() -> AsyncIterator[dict[str, Any]]:
        if follow_live:
            async for e in follow(api, run_id, start, poll_s=CONSOLE_POLL_S):
                yield _sse(e, tools)
            return
        for e in await api.off_loop(api.services.store.events, run_id, start, limit=100_000):
            yield _sse(e, tools)

    return sse(stream())


def _tools(api: Api, run_id: str, principal: Principal
           ) -> Callable[[str], ToolSpec | None] | None:
    """The tool lookup the timeline redacts with, once the run is the caller's own."""
    own_run(api, run_id, principal)
    return reads(api).tools


def _sse(event: dict[str, Any], tools: Callable[[str], ToolSpec | None] | None
         ) -> dict[str, Any]:
    shown = console_event(event, tools)
    return {"event": shown["type"], "id": str(shown["seq"]),
            "data": json.dumps(shown, default=str)}


def deliveries(api: Api, run: RunRow) -> list[dict[str, Any]]:
    """The run's webhook deliveries: target (without its query), status, attempts."""
    reads(api)  # the delivery log exists once the console's reads are set up
    return webhook_log(api.services.store.db, run.id)
