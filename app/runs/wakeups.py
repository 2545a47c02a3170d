"""Wake-ups across processes: workers NOTIFY that runs have new events; API replicas LISTEN.

A notification only says "look again": readers re-read the store, which holds every event.
The publisher coalesces per run: however many events (tokens included) a run emits within
``every_s``, one notification names it, and one notification names every run that changed
in that window. A lost notification costs a reader at most its poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from app.runs.broker import EventBroker
from app.runs.events import Listener

log = logging.getLogger(__name__)
CHANNEL = "foreman_events"
PAYLOAD_MAX = 7000  # Postgres caps a payload at 8000 bytes


class Publisher:
    """Collects the runs that emitted and notifies them together every ``every_s``."""

    def __init__(self, url: str, every_s: float = 0.05) -> None:
        self.url = url
        self.every_s = every_s
        self.sent = 0
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    def listener(self, run_id: str) -> Listener:
        """A run-events listener that marks the run for the next notification."""

        def on_event(seq: int, type: str, data: Any) -> None:
            self.mark(run_id)

        return on_event

    def mark(self, run_id: str) -> None:
        """The run has something new."""
        self._dirty.add(run_id)
        self._kick.set()

    async def start(self) -> None:
        """Begin publishing in the background."""
        self._task = asyncio.create_task(self._loop(), name="wakeup-publisher")

    async def close(self) -> None:
        """Flush what is marked and stop."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._dirty:
            with suppress(Exception):
                await self._send_once()

    async def _send_once(self) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await self._flush(conn)

    async def _flush(self, conn: Any) -> None:
        batch, self._dirty = sorted(self._dirty), set()
        chunk: list[str] = []
        for run_id in [*batch, None]:
            if run_id is None or sum(len(r) + 1 for r in chunk) + len(run_id) > PAYLOAD_MAX:
                if chunk:
                    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, ",".join(chunk)))
                    self.sent += 1
                chunk = []
            if run_id is not None:
                chunk.append(run_id)

    async def _loop(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url,
                                                                 autocommit=True) as conn:
                    while True:
                        await self._kick.wait()
                        self._kick.clear()
                        await self._flush(conn)
                        await asyncio.sleep(self.every_s)  # what arrives meanwhile waits
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database went away: readers poll meanwhile
                log.warning("wake-up publisher lost its connection: %s", type(e).__name__)
                await asyncio.sleep(1.0)


class Subscriber:
    """Listens for wake-ups and wakes this process's readers of the named runs."""

    def __init__(self, url: str, broker: EventBroker) -> None:
        self.url = url
        self.broker = broker
        self.received = 0
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def start(self) -> None:
        """Begin listening in the background."""
        self._task = asyncio.create_task(self._loop(), name="wakeup-subscriber")

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url,
                                                                 autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    async for note in conn.notifies():
                        self.received += 1
                        for run_id in note.payload.split(","):
                            self.broker.notify(run_id)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # reconnect; readers poll meanwhile
                self.listening.clear()
                log.warning("wake-up subscriber lost its connection: %s", type(e).__name__)
                await asyncio.sleep(1.0)
