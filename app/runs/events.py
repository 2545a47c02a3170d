"""Event sinks: persist every event of a run in order, and fan it out to live listeners.

``RunEvents`` writes each event as it is emitted (for code already off the event loop, or
at a run's edges). ``QueuedRunEvents`` is what a run's graph emits into on the event loop:
an emit queues the event and returns, and one writer task per run stores what is queued in
order, one transaction per batch, on the database's threads (``Database.call``), then tells
the listeners. Nothing of the run's that is durable may get ahead of its events: before
each checkpoint write (the checkpoint fence's ``flush``), before any other write of the
run, and at the run's end the runner waits for the queue to be stored (``flush``), so a
step's events are stored before the checkpoint that says the step happened — what writing
them inline guaranteed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.runs import crashpoints
from app.storage.store import Store
from graphs.ports import EventSink

Listener = Callable[[int, str, Mapping[str, Any]], None]
Watcher = Callable[[str, Mapping[str, Any]], None]


class RunEvents(EventSink):
    """Appends to the run's event log, then tells each listener (never blocking the run)."""

    def __init__(self, store: Store, run_id: str,
                 listeners: Sequence[Listener] | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.listeners = list(listeners or [])
        # Told of each event as it is emitted, before it is stored (the run's trace folds
        # events into its spans in the order the run made them).
        self.watchers: list[Watcher] = []

    def emit(self, type: str, data: Mapping[str, Any]) -> None:
        """Persist and publish one event."""
        self.watch(type, data)
        seq = self.store.append_event(self.run_id, type, data)
        crashpoints.hit("event.append")
        self.tell(seq, type, data)

    def watch(self, type: str, data: Mapping[str, Any]) -> None:
        """Tell the watchers of an event being emitted."""
        for watcher in self.watchers:
            watcher(type, data)

    def tell(self, seq: int, type: str, data: Mapping[str, Any]) -> None:
        """Tell the listeners of a stored event."""
        for listener in self.listeners:
            listener(seq, type, data)

    def notify(self, seq: int, type: str, data: Mapping[str, Any]) -> None:
        """Tell watchers and listeners of an event stored by other means (e.g. with an
        approval row)."""
        self.watch(type, data)
        self.tell(seq, type, data)


class QueuedRunEvents(RunEvents):
    """A run's events, queued on the event loop and stored in order off it (module doc).

    A write that fails (``LeaseLost`` once another owner claimed the run, ``StorageError``)
    drops the rest of the queue and is raised again by the next ``emit`` or ``flush``.
    """

    def __init__(self, store: Store, run_id: str,
                 listeners: Sequence[Listener] | None = None) -> None:
        super().__init__(store, run_id, listeners)
        self._loop = asyncio.get_running_loop()
        self._on_loop = threading.get_ident()
        self._queue: list[tuple[str, dict[str, Any], str]] = []
        self._writer: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    def emit(self, type: str, data: Mapping[str, Any]) -> None:
        """Queue one event (a copy of ``data`` as it will be stored) and return."""
        if self._error is not None:
            raise self._error
        text = json.dumps(data, default=str)  # what is stored: later changes do not leak in
        stored = json.loads(text)
        self.watch(type, stored)
        if threading.get_ident() == self._on_loop:
            self._enqueue(type, stored, text)
        else:
            self._loop.call_soon_threadsafe(self._enqueue, type, stored, text)

    def notify(self, seq: int, type: str, data: Mapping[str, Any]) -> None:
        """Tell them on the event loop (listeners feed its streams), whichever thread
        stored the event."""
        if threading.get_ident() == self._on_loop:
            super().notify(seq, type, data)
        else:
            self._loop.call_soon_threadsafe(super().notify, seq, type, data)

    def _enqueue(self, type: str, data: dict[str, Any], text: str) -> None:
        self._queue.append((type, data, text))
        if self._writer is None or self._writer.done():
            self._writer = self._loop.create_task(self._drain(), name=f"events-{self.run_id}")

    async def _drain(self) -> None:
        while self._queue and self._error is None:
            batch, self._queue = self._queue, []
            try:
                seqs = await self.store.db.call(self._store_batch, batch)
            except BaseException as e:  # kept for the run's next emit or flush to raise
                self._error = e
                self._queue.clear()
                return
            for seq, (type, data, _) in zip(seqs, batch, strict=True):
                self.tell(seq, type, data)

    def _store_batch(self, batch: list[tuple[str, dict[str, Any], str]]) -> list[int]:
        seqs = self.store.append_events(self.run_id, batch)  # one transaction
        for _ in seqs:
            crashpoints.hit("event.append")
        return seqs

    async def flush(self) -> None:
        """Wait until every event emitted so far is stored and told; raise a failed write.
        Cancelling the caller does not cancel the writer: the queue is still stored."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._error is not None:
            raise self._error


class SystemClock:
    """Wall clock."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()
