"""Wakes event streams when their run emits; publishing never waits for a reader."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

from app.events import Listener


class EventBroker:
    """Readers take a waiter, re-read the store, then sleep on it; emit sets it."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._waiters: dict[str, asyncio.Event] = {}

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

    def _wake(self, run_id: str) -> None:
        ev = self._waiters.pop(run_id, None)
        if ev is not None:
            ev.set()
