"""What every provider returns, the faults it raises, and the small interface the router calls."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from app.config.settings import ModelEntry
from graphs.errors import ModelCallError
from graphs.ports import ModelRequest, ToolCall

FaultKind = Literal["rate_limited", "server_error", "timeout", "connection", "auth", "bad_request",
                    "empty_reply", "truncated", "runaway"]
RETRYABLE: frozenset[str] = frozenset({"rate_limited", "server_error", "timeout", "connection",
                                       "truncated"})
# The model answered, but with nothing usable: the deployment is up, the answer is not.
# (A call for an unknown tool or with arguments that are not JSON is the agent loop's to
# refuse: it shows the model its error and marks the next call ``tool_args_invalid``.)
BAD_OUTPUT: frozenset[str] = frozenset({"empty_reply", "truncated", "runaway"})
# A reply this many times longer than it was allowed to be comes from a server that
# ignores ``max_tokens``; it is refused (and still paid for).
RUNAWAY_FACTOR = 2

TokenSink = Callable[[str], None]
"""Receives a streamed reply's content deltas as the provider produces them."""


@dataclass(frozen=True)
class ProviderReply:
    """A provider's answer with its token usage (prices are the catalog's business)."""

    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


class ProviderFault(ModelCallError):
    """One deployment failed one call; the router decides whether to retry or move on."""

    def __init__(
        self,
        message: str,
        kind: FaultKind,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: FaultKind = kind
        self.status = status
        self.retry_after_s = retry_after_s
        self.reply: ProviderReply | None = None  # a bad-output fault keeps what was answered

    @property
    def retryable(self) -> bool:
        """Worth another try on the same deployment (429, 5xx, timeouts, dropped links)."""
        return self.kind in RETRYABLE


class Provider(Protocol):
    """Sends one request to one concrete model."""

    async def complete(self, model: ModelEntry, request: ModelRequest) -> ProviderReply: ...

    def count_tokens(self, model: ModelEntry, request: ModelRequest) -> int:
        """Prompt tokens the request will cost on this model (for budget reservations)."""
        ...


class StreamingProvider(Provider, Protocol):
    """A provider that can also stream a reply's text to a sink while it is produced."""

    async def stream(self, model: ModelEntry, request: ModelRequest,
                     on_token: TokenSink) -> ProviderReply: ...


def bad_output(model: ModelEntry, request: ModelRequest, reply: ProviderReply
               ) -> ProviderFault | None:
    """Why a well-formed reply is still unusable, as a typed fault; None when it is fine."""
    name = model.name
    limit = request.max_tokens or model.max_tokens
    fault: ProviderFault | None = None
    if reply.completion_tokens > RUNAWAY_FACTOR * limit:
        fault = ProviderFault(f"{name}: runaway reply ({reply.completion_tokens} tokens for "
                              f"a limit of {limit})", "runaway")
    elif not reply.tool_calls and not (reply.content or "").strip():
        fault = ProviderFault(f"{name}: empty reply", "empty_reply")
    if fault is not None:
        fault.reply = reply
    return fault


def tool_calls_to_json(calls: Sequence[ToolCall]) -> list[dict[str, str]]:
    """Tool calls as stored in the journal and the response cache."""
    return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]


def tool_calls_from_json(data: dict[str, Any]) -> list[ToolCall]:
    """Tool calls of a stored reply (arguments kept as the JSON text the model sent)."""
    return [ToolCall(id=c["id"], name=c["name"],
                     arguments=c["arguments"] if isinstance(c["arguments"], str)
                     else json.dumps(c["arguments"]))
            for c in data.get("tool_calls", [])]
