"""An API-side run manager that executes nothing and one worker serving it, in this process,
for the queue-path tests (stopped cleanly at the end)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from app.runs.broker import EventBroker
from app.runs.queued_runs import QueuedRunManager
from app.runs.worker import Worker
from app.services import Services


@asynccontextmanager
async def queued_cluster(services: Services) -> AsyncIterator[tuple[QueuedRunManager, Worker]]:
    """The manager listening for wake-ups and a worker (concurrency 2) ready to take jobs."""
    manager = QueuedRunManager(services, EventBroker())
    await manager.open()
    worker = Worker(services, concurrency=2, install_signals=False)
    serving = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 60)  # stopping it mid-start would hang
    try:
        yield manager, worker
    finally:
        serving.cancel()
        with suppress(asyncio.CancelledError):
            await serving
        await manager.close()
