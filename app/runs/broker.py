"""Wakes event streams when their run emits; publishing never waits for a reader."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

from app.llm.stream import RunTokens, TokenDelta
from app.runs.events import Listener

TOKEN_QUEUE = 10_000  # deltas a slow reader may fall behind by before it misses some


class EventBroker:
    """Readers take a waiter, re-read the store, then sleep on it; emit sets it."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._waiters: dict[str, asyncio.Event] = {}
        # Token deltas stay in this process, in memory: never one stored row per token.
        self._token_readers: dict[str, set[asyncio.Queue[TokenDelta]]] = {}

    def waiter(self, run_id: str) -> asyncio.Event:
        """The event set on the run's next emit (take it before reading the store)."""
        ev = self._waiters.get(run_id)
        if ev is None:
            ev = self._waiters[run_id] = asyncio.Event()
        return ev

    def notify(self, run_id: str) -> None:
        """Wake the run's readers (safe from any thread)."""
        if threading.get_ident() == self._thread:
            self._wake(run_id)
        else:
            self._loop.call_soon_threadsafe(self._wake, run_id)

    def listener(self, run_id: str) -> Listener:
        """A run-events listener that only wakes readers (the event is already stored)."""

        def on_event(seq: int, type: str, data: Mapping[str, Any]) -> None:
            self.notify(run_id)

        return on_event

    def subscribe_tokens(self, run_id: str) -> asyncio.Queue[TokenDelta]:
        """A queue of the run's streamed deltas from now on (take it before the run starts)."""
        queue: asyncio.Queue[TokenDelta] = asyncio.Queue(TOKEN_QUEUE)
        self._token_readers.setdefault(run_id, set()).add(queue)
        return queue

    def unsubscribe_tokens(self, run_id: str, queue: asyncio.Queue[TokenDelta]) -> None:
        """Stop feeding that queue."""
        readers = self._token_readers.get(run_id)
        if readers is not None:
            readers.discard(queue)
            if not readers:
                self._token_readers.pop(run_id, None)

    def tokens(self, run_id: str) -> RunTokens:
        """The run's token receiver: hands each delta to every reader, never waiting."""

        def publish(delta: TokenDelta) -> None:
            if threading.get_ident() == self._thread:
                self._publish(run_id, delta)
            else:
                self._loop.call_soon_threadsafe(self._publish, run_id, delta)

        return publish

    def _publish(self, run_id: str, delta: TokenDelta) -> None:
        for queue in list(self._token_readers.get(run_id, ())):
            if not queue.full():  # a reader that stopped reading misses deltas, not the run
                queue.put_nowait(delta)

    def _wake(self, run_id: str) -> None:
        ev = self._waiters.pop(run_id, None)
        if ev is not None:
            ev.set()
