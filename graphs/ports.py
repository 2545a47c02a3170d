"""The graphs' only doors to the outside world: small Protocols and plain data.

Everything here is supplied per run through LangGraph's runtime context
(:class:`RunContext`), so one compiled graph serves every run and every backend.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol

from tools.spec import Risk, SideEffect

# The action name of a budget-extension approval (a policy rule may name it like a tool).
BUDGET_ACTION = "extend_budget"

Message = dict[str, Any]
"""One chat message in OpenAI wire shape (role, content, tool_calls, tool_call_id)."""


@dataclass(frozen=True)
class ModelRequest:
    """One model call as the graph asks for it.

    ``role`` is ``manager.plan|progress|verify|final`` or ``specialist.<agent>``;
    ``call_key`` names the call deterministically within a run (round, step, attempt), so
    a node that re-runs after a crash asks for the very same call; ``signals`` carries
    what a cost-aware router needs to judge difficulty.
    """

    role: str
    messages: list[Message]
    call_key: str
    tools: list[dict[str, Any]] | None = None
    json_output: bool = False
    max_tokens: int | None = None
    signals: Mapping[str, Any] = field(default_factory=dict)
    # The JSON Schema a structured reply must follow (sent where the model supports it).
    json_schema: Mapping[str, Any] | None = None

    @cached_property
    def tools_json(self) -> str:
        """The tool schemas as sorted JSON, "" without tools: serialised once per request,
        however many times it is counted (for routing, its reservation and its usage)."""
        return json.dumps(self.tools, sort_keys=True, default=str) if self.tools else ""


@dataclass(frozen=True)
class ToolCall:
    """A tool call proposed by a model: its id, tool name and raw JSON arguments."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Usage:
    """Tokens and cost of one completed model call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class ModelResponse:
    """What the router returns: text and/or tool calls, with usage and the model used."""

    content: str | None
    tool_calls: list[ToolCall]
    usage: Usage
    model: str


class ModelRouter(Protocol):
    """Routes a model call to a concrete model; raises ``ModelCallError`` when it cannot."""

    async def complete(self, request: ModelRequest) -> ModelResponse: ...


class GateAction(StrEnum):
    """What the policy gate decides for a tool call."""

    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"


@dataclass(frozen=True)
class GateRequest:
    """A validated tool call about to run, with who asks for it."""

    team: str
    agent: str
    tool: str
    args: Mapping[str, Any]
    side_effect: SideEffect
    risk: Risk
    thread_id: str
    tenant: str = "default"


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict; ``rule`` names the policy rule that decided."""

    action: GateAction
    reason: str = ""
    rule: str = "default"
    approver_group: str | None = None
    expires_in_s: int | None = None


class PolicyGate(Protocol):
    """Deterministic code deciding whether a tool call may run; never a model."""

    def check(self, request: GateRequest) -> GateDecision: ...


@dataclass(frozen=True)
class ToolInvocation:
    """A tool call cleared to run. ``key`` (thread + tool call id) makes it run at most once."""

    key: str
    thread_id: str
    agent: str
    tool: str
    args: Mapping[str, Any]
    note: str = ""  # e.g. what the policy would have asked, for a shadow-mode record


@dataclass(frozen=True)
class ToolOutcome:
    """The stored result of a tool call; ``replayed`` when it came from the tool-call ledger."""

    ok: bool
    data: Mapping[str, Any]
    replayed: bool = False


class ToolExecutor(Protocol):
    """Runs a tool exactly once per invocation key and returns its (possibly replayed) result."""

    async def execute(self, invocation: ToolInvocation) -> ToolOutcome: ...

    async def recorded(self, key: str) -> bool:
        """The call of invocation key ``key`` is in the ledger (it was cleared and started)."""
        ...


class EventSink(Protocol):
    """Receives the run's typed events (CONTRACT.md) in order."""

    def emit(self, type: str, data: Mapping[str, Any]) -> None: ...


class Clock(Protocol):
    """Wall clock in seconds; injected so limits are testable."""

    def now(self) -> float: ...


class Trust(StrEnum):
    """How far a remembered fact may be relied on. None of them is ever an instruction."""

    SYSTEM = "system"  # written by Foreman's own code, e.g. from the run's configuration
    AGENT = "agent"  # an agent's report built only from systems-of-record results
    UNTRUSTED = "untrusted"  # contains or derives from document or third-party text


@dataclass(frozen=True)
class MemoryNote:
    """A fact kept across runs of a thread, with its provenance.

    ``key`` makes a write idempotent (a node that re-runs after a crash writes the same
    note again, not a second one); ``tools`` names the tool results the fact rests on.
    """

    key: str
    text: str
    source: str
    trust: Trust
    agent: str = ""
    tools: tuple[str, ...] = ()


class Memory(Protocol):
    """Long-term memory of a thread; what it returns is shown to models as data only."""

    async def recall(self, thread_id: str, query: str) -> list[MemoryNote]: ...

    async def remember(self, thread_id: str, note: MemoryNote) -> None: ...

    async def flush(self) -> None: ...


@dataclass(frozen=True)
class RunContext:
    """Per-run dependencies handed to every node through LangGraph's runtime context."""

    router: ModelRouter
    tools: ToolExecutor
    gate: PolicyGate
    events: EventSink
    clock: Clock
    tenant: str = "default"
    memory: Memory | None = None
    shadow: bool = False  # write tools record what they would do instead of doing it
    # Save every superstep of a specialist's step (for inspecting it later), not only the
    # ones where it pauses or fails (graphs/delegate.py).
    keep_step_history: bool = False
