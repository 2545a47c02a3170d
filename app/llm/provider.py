"""What every provider returns, the faults it raises, and the small interface the router calls."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from app.settings import ModelEntry
from graphs.errors import ModelCallError
from graphs.ports import ModelRequest, ToolCall

FaultKind = Literal["rate_limited", "server_error", "timeout", "connection", "auth", "bad_request"]
RETRYABLE: frozenset[str] = frozenset({"rate_limited", "server_error", "timeout", "connection"})


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


def tool_calls_to_json(calls: Sequence[ToolCall]) -> list[dict[str, str]]:
    """Tool calls as stored in the journal and the response cache."""
    return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]


def tool_calls_from_json(data: dict[str, Any]) -> list[ToolCall]:
    """Tool calls of a stored reply (arguments kept as the JSON text the model sent)."""
    return [ToolCall(id=c["id"], name=c["name"],
                     arguments=c["arguments"] if isinstance(c["arguments"], str)
                     else json.dumps(c["arguments"]))
            for c in data.get("tool_calls", [])]
