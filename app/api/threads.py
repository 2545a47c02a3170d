"""Threads: create, get, search, current state and checkpoint history (tenant-scoped).

App-store reads and writes run off the event loop (:meth:`Api.off_loop`); checkpoint reads
are async and stay on it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.auth import Principal, PrincipalDep, Requester
from app.api.deps import Api, ApiDep, ThreadId
from app.api.schemas import HistoryRequest, ThreadCreate, ThreadSearch
from app.api.views import snapshot_of, state_json, thread_json
from app.errors import Conflict
from app.runs.runner import new_thread_id
from app.storage.store import RunRow, ThreadRow

router = APIRouter(tags=["threads"])
SEARCH_PAGE = 200
SEARCH_SCAN = 5_000


@router.post("/threads")
async def create_thread(body: ThreadCreate, api: ApiDep,
                        principal: Requester) -> dict[str, Any]:
    """A new, empty thread of the caller's tenant."""
    thread_id = body.thread_id or new_thread_id()

    def create() -> ThreadRow:
        # Ids are per tenant: only the caller's own thread of that id is a conflict.
        if not api.services.store.create_thread(thread_id, principal.tenant,
                                                body.metadata) and body.if_exists == "raise":
            raise Conflict(f"thread {thread_id} already exists")
        return api.thread(thread_id, principal)

    return await thread_json(api, await api.off_loop(create))


def quick_status(api: Api, row: ThreadRow) -> str:
    """The thread's status from the app tables alone (no checkpoint read)."""
    if api.manager.thread_busy(row.key):
        return "busy"
    if api.services.store.thread_pending_approvals(row.key):
        return "interrupted"
    latest = api.services.store.latest_run(row.key)
    return "error" if latest is not None and latest.status == "error" else "idle"


@router.post("/threads/search")
async def search_threads(body: ThreadSearch, api: ApiDep,
                         principal: PrincipalDep) -> list[dict[str, Any]]:
    """The tenant's threads, newest first, filtered by metadata and status.

    Pages through the tenant's threads by the (tenant, updated_at) index and stops as soon
    as ``offset + limit`` match; only the threads returned are rendered in full. With
    filters at most ``SEARCH_SCAN`` threads are looked at.
    """
    rows = await api.off_loop(_matching, api, principal, body)
    return [await thread_json(api, r) for r in rows]


def _matching(api: Api, principal: Principal, body: ThreadSearch) -> list[ThreadRow]:
    """The page of the tenant's threads the search asks for."""
    store = api.services.store
    if not body.metadata and not body.status:
        return store.search_threads(principal.tenant, limit=body.limit, offset=body.offset)
    wanted = (body.metadata or {}).items()
    found: list[ThreadRow] = []
    scanned = 0
    while len(found) < body.offset + body.limit and scanned < SEARCH_SCAN:
        page = store.search_threads(principal.tenant, limit=SEARCH_PAGE, offset=scanned)
        scanned += len(page)
        for r in page:
            if all(r.metadata.get(k) == v for k, v in wanted) and (
                    not body.status or quick_status(api, r) == body.status):
                found.append(r)
        if len(page) < SEARCH_PAGE:
            break
    return found[body.offset: body.offset + body.limit]


@router.get("/threads/{thread_id}")
async def get_thread(thread_id: ThreadId, api: ApiDep,
                     principal: PrincipalDep) -> dict[str, Any]:
    """One thread with its status, values and pending interrupts."""
    return await thread_json(api, await api.athread(thread_id, principal))


@router.get("/threads/{thread_id}/state")
async def get_state(thread_id: ThreadId, api: ApiDep,
                    principal: PrincipalDep) -> dict[str, Any]:
    """The thread's latest checkpoint as a ``ThreadState``."""
    thread, runs = await api.off_loop(_with_runs, api, thread_id, principal)
    snapshot = await snapshot_of(api, thread.key, runs)
    if snapshot is None:
        return {"values": {"messages": []}, "next": [], "tasks": [], "metadata": {},
                "checkpoint": {"thread_id": thread_id, "checkpoint_ns": "",
                               "checkpoint_id": None, "checkpoint_map": None},
                "created_at": None, "parent_checkpoint": None, "interrupts": []}
    return state_json(thread_id, snapshot, runs)


@router.post("/threads/{thread_id}/history")
async def get_history(thread_id: ThreadId, body: HistoryRequest, api: ApiDep,
                      principal: PrincipalDep) -> list[dict[str, Any]]:
    """Past checkpoints, newest first (at most ``limit``)."""
    thread, runs = await api.off_loop(_with_runs, api, thread_id, principal)
    if not runs:
        return []
    runner = api.services.runner
    graph = runner.graph(runs[-1].team)
    return [state_json(thread_id, snap, runs) async for snap in
            graph.aget_state_history(runner.config(thread.key, runs[-1].team), limit=body.limit)]


def _with_runs(api: Api, thread_id: str, principal: Principal) -> tuple[ThreadRow, list[RunRow]]:
    thread = api.thread(thread_id, principal)
    return thread, api.services.store.thread_runs(thread.key)
