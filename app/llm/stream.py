"""Token streaming: which calls stream, what a streamed delta carries, and who receives it.

The receiver of a run's deltas is set per run (in the task that executes it) through a
context variable, so the graphs and the router's callers need no extra argument; with no
receiver set nothing streams and every call is a plain completion.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

from app.config.settings import ModelEntry
from app.llm.provider import Provider, ProviderReply, StreamingProvider
from graphs.ports import ModelRequest

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


class CallStream:
    """One call's stream to the run's receiver; each attempt (retry, fallback) is numbered."""

    def __init__(self, receiver: RunTokens, run_id: str, request: ModelRequest) -> None:
        self.receiver = receiver
        self.run_id = run_id
        self.request = request
        self.attempts = itertools.count()

    @classmethod
    def of(cls, run_id: str, request: ModelRequest) -> CallStream | None:
        """The stream for this call, or None when it should not stream (or nobody reads)."""
        receiver = token_receiver.get() if streams(request.role) else None
        return cls(receiver, run_id, request) if receiver is not None else None

    async def call(self, provider: Provider, name: str, entry: ModelEntry,
                   request: ModelRequest) -> ProviderReply:
        """Stream where the provider can; a plain completion where it cannot."""
        if not hasattr(provider, "stream"):
            return await provider.complete(entry, request)
        streaming: StreamingProvider = provider  # type: ignore[assignment]
        attempt = next(self.attempts)
        call_key, role = self.request.call_key, self.request.role

        def on_token(text: str) -> None:
            self.receiver(TokenDelta(self.run_id, call_key, role, name, attempt, text))

        return await streaming.stream(entry, request, on_token)
