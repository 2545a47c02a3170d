"""Request dependencies: the composed app, and tenant-checked access to threads and runs.

The app store is synchronous (its PostgreSQL pool and SQLite connection block), so routes
do not call it on the event loop: :meth:`Api.off_loop` runs a read or a short write (or a
whole step of them, with its shaping) on a small thread pool of its own, bounded by the
database pool's size, and awaits it. A slow query then delays its own request, not every
request and stream the loop serves. (Run starts, cancels and approval decisions do their
database work off the loop inside the run manager and the approvals service.)
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Path, Request

from app.api.auth import KeyRing, Principal
from app.errors import InvalidRequest, NotFound
from app.observability.metrics import Metrics
from app.runs.broker import EventBroker
from app.runs.run_manager import RunManager
from app.services import Services
from app.storage.cost_ledger import Totals
from app.storage.store import RunRow, ThreadRow

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_ID = re.compile(ID_PATTERN)
ASSISTANT_NS = uuid.UUID("6c1e4c5e-2f1b-4d7e-9a57-f0e3a1d2b9c4")
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Api:
    """Everything a route needs, built once in the lifespan."""

    services: Services
    manager: RunManager
    broker: EventBroker
    keyring: KeyRing
    metrics: Metrics
    read_threads: int | None = field(default=None, compare=False)

    @cached_property
    def _reads(self) -> ThreadPoolExecutor:
        # Half the database pool: run starts, decisions and the runs' own steps keep
        # connections to take.
        size = self.read_threads or max(2, self.services.settings.storage.pool_max_size // 2)
        return ThreadPoolExecutor(max_workers=size, thread_name_prefix="store-read")

    async def off_loop(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the route pool, awaited (its exception re-raised)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Stop the route pool's threads (steps in flight finish first)."""
        if "_reads" in self.__dict__:
            self._reads.shutdown(wait=True)

    async def athread(self, thread_id: str, principal: Principal) -> ThreadRow:
        """:meth:`thread`, off the event loop."""
        return await self.off_loop(self.thread, thread_id, principal)

    async def arun(self, thread_id: str, run_id: str, principal: Principal) -> RunRow:
        """:meth:`run`, off the event loop."""
        return await self.off_loop(self.run, thread_id, run_id, principal)

    def thread(self, thread_id: str, principal: Principal) -> ThreadRow:
        """The caller's tenant's thread of that id (its ``key`` names it inside); ids are
        per tenant, so another tenant's thread of the same id is simply not this one."""
        store = self.services.store
        row = store.get_thread(principal.tenant, thread_id) if _ID.match(thread_id) else None
        if row is None:
            raise NotFound(f"thread {thread_id} not found")
        return row

    def thread_id_ok(self, thread_id: str) -> None:
        """Reject ids a client may not choose."""
        if not _ID.match(thread_id):
            raise InvalidRequest(f"thread id must match {ID_PATTERN}", field="thread_id")

    def run(self, thread_id: str, run_id: str, principal: Principal) -> RunRow:
        """The caller's run on that thread."""
        thread = self.thread(thread_id, principal)
        row = self.services.store.get_run(run_id) if _ID.match(run_id) else None
        if row is None or row.thread_id != thread.key or row.tenant != principal.tenant:
            raise NotFound(f"run {run_id} not found on thread {thread_id}")
        return row

    def run_totals(self, thread_id: str, run_id: str, principal: Principal
                   ) -> tuple[RunRow, Totals]:
        """The caller's run on that thread with its model totals, read in one statement."""
        found = (self.services.store.thread_run(principal.tenant, thread_id, run_id)
                 if _ID.match(thread_id) and _ID.match(run_id) else None)
        if found is None:
            self.run(thread_id, run_id, principal)  # raises the NotFound that says which
            raise NotFound(f"run {run_id} not found on thread {thread_id}")
        return found

    def team_of(self, assistant_id: str) -> str:
        """The team an assistant id names (the team name itself, or its assistant UUID)."""
        for team in self.services.settings.teams:
            if assistant_id in (team, assistant_uuid(team)):
                return team
        raise NotFound(f"assistant {assistant_id!r} not found")


def assistant_uuid(team: str) -> str:
    """The stable assistant id of a team."""
    return str(uuid.uuid5(ASSISTANT_NS, f"foreman:{team}"))


async def get_api(request: Request) -> Api:
    """The app's composed state (async: a sync dependency costs a worker-thread hop)."""
    api: Api = request.app.state.api
    return api


ApiDep = Annotated[Api, Depends(get_api)]
ThreadId = Annotated[str, Path(max_length=128)]
RunId = Annotated[str, Path(max_length=128)]
