"""Event sinks: persist every event of a run in order, and fan it out to live listeners."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.runs import crashpoints
from app.storage.store import Store
from graphs.ports import EventSink

Listener = Callable[[int, str, Mapping[str, Any]], None]


class RunEvents(EventSink):
    """Appends to the run's event log, then tells each listener (never blocking the run)."""

    def __init__(self, store: Store, run_id: str,
                 listeners: Sequence[Listener] | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.listeners = list(listeners or [])

    def emit(self, type: str, data: Mapping[str, Any]) -> None:
        """Persist and publish one event."""
        seq = self.store.append_event(self.run_id, type, data)
        crashpoints.hit("event.append")
        self.notify(seq, type, data)

    def notify(self, seq: int, type: str, data: Mapping[str, Any]) -> None:
        """Tell the listeners of an event already stored (e.g. with an approval row)."""
        for listener in self.listeners:
            listener(seq, type, data)


class SystemClock:
    """Wall clock."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()
