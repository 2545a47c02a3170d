"""Token streaming: which calls stream, what a streamed delta carries, and who receives it.

The receiver of a run's deltas is set per run (in the task that executes it) through a
context variable, so the graphs and the router's callers need no extra argument; with no
receiver set nothing streams and every call is a plain completion.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

# Calls whose text people read as it comes: the run's final answer.
STREAM_ROLES: frozenset[str] = frozenset({"manager.final"})


@dataclass(frozen=True)
class TokenDelta:
    """A piece of a streamed reply. ``attempt`` grows when a call is retried or falls back,
    so a reader knows the text of an earlier attempt was abandoned."""

    run_id: str
    call_key: str
    role: str
    model: str
    attempt: int
    text: str

    def to_json(self) -> dict[str, Any]:
        """Plain JSON shape."""
        return asdict(self)


RunTokens = Callable[[TokenDelta], None]

token_receiver: ContextVar[RunTokens | None] = ContextVar("foreman_token_receiver",
                                                          default=None)


def streams(role: str) -> bool:
    """Whether a call of this role streams (when someone receives the run's tokens)."""
    return role in STREAM_ROLES
