"""Typed run events over SSE: replay from the start, resume after ``Last-Event-ID``.

Readers poll the store (woken by the broker on each emit), so a slow or vanished client
only slows its own stream; the run never waits for anyone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import suppress
from typing import Annotated, Any, cast

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse

from app.api.auth import PrincipalDep
from app.api.deps import Api, ApiDep, RunId
from app.errors import NotFound
from app.llm.stream import TokenDelta
from app.storage.store import ACTIVE

router = APIRouter(tags=["events"])
POLL_S = 1.0  # also picks up events written by another process (Postgres)
SEND_TIMEOUT_S = 30.0


async def follow(api: Api, run_id: str, after: int = 0,
                 poll_s: float = POLL_S) -> AsyncIterator[dict[str, Any]]:
    """Stored events of a run after ``after``, then live ones until the run stops."""
    store = api.services.store
    while True:
        waiter = api.broker.waiter(run_id)  # taken before reading: no emit slips between
        batch = await api.off_loop(store.events, run_id, after)
        for event in batch:
            after = event["seq"]
            yield event
        if batch:
            continue
        run = await api.off_loop(store.get_run, run_id)
        if run is None or (run.status not in ACTIVE and api.manager.active_run(run_id) is None):
            for event in await api.off_loop(store.events, run_id, after):
                yield event
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), poll_s)


async def follow_tokens(api: Api, run_id: str, tokens: asyncio.Queue[TokenDelta],
                        after: int = 0) -> AsyncIterator[dict[str, Any] | TokenDelta]:
    """``follow`` with the run's streamed token deltas in between, in the order they came.

    ``tokens`` is a broker subscription taken before the run started; it is given back
    when the stream ends. A delta is always published before the event that follows it is
    stored, so draining the queue before each event keeps the two in order.
    """
    events = cast(AsyncGenerator[dict[str, Any]], follow(api, run_id, after))
    next_event: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(anext(events))
    next_token: asyncio.Future[TokenDelta] = asyncio.ensure_future(tokens.get())
    try:
        while True:
            pending: set[asyncio.Future[Any]] = {next_event, next_token}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if next_token.done():
                yield next_token.result()
                next_token = asyncio.ensure_future(tokens.get())
            while not tokens.empty():
                yield tokens.get_nowait()
            if next_event.done():
                try:
                    event = next_event.result()
                except StopAsyncIteration:
                    break
                yield event
                next_event = asyncio.ensure_future(anext(events))
        if next_token.done():
            yield next_token.result()
        while not tokens.empty():
            yield tokens.get_nowait()
    finally:
        next_token.cancel()
        next_event.cancel()
        with suppress(asyncio.CancelledError, StopAsyncIteration):
            await next_event
        await events.aclose()
        api.broker.unsubscribe_tokens(run_id, tokens)


def parse_event_id(value: str | None) -> tuple[int, int]:
    """``Last-Event-ID`` as (seq, part); garbage counts as "from the start"."""
    if not value:
        return 0, 0
    seq, _, part = value.strip().partition(".")
    try:
        return max(0, int(seq)), max(0, int(part or 9))
    except ValueError:
        return 0, 0


def sse(stream: AsyncIterator[dict[str, Any]], headers: dict[str, str] | None = None
        ) -> EventSourceResponse:
    """An SSE response that drops clients who stop reading."""
    return EventSourceResponse(stream, headers=headers, send_timeout=SEND_TIMEOUT_S, ping=15)


@router.get("/v1/runs/{run_id}/events")
async def run_events(run_id: RunId, api: ApiDep, principal: PrincipalDep, request: Request,
                     last_event_id: Annotated[str | None, Header()] = None,
                     after: Annotated[int, Query(ge=0, le=10**9)] = 0,
                     follow_live: Annotated[bool, Query(alias="follow")] = True,
                     ) -> EventSourceResponse:
    """The run's typed events (``event`` = type, ``id`` = sequence number)."""
    run = await api.off_loop(api.services.store.get_run, run_id)
    if run is None or run.tenant != principal.tenant:
        raise NotFound(f"run {run_id} not found")
    start = max(after, parse_event_id(last_event_id)[0])

    async def stream() -> AsyncIterator[dict[str, Any]]:
        source = follow(api, run_id, start) if follow_live else _stored(api, run_id, start)
        async for e in source:
            yield {"event": e["type"], "id": str(e["seq"]), "data": json.dumps(e)}

    return sse(stream())


async def _stored(api: Api, run_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
    for e in await api.off_loop(api.services.store.events, run_id, after, limit=100_000):
        yield e
