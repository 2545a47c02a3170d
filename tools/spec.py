"""Typed tool specifications: what a tool takes, what it touches, how risky it is."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from tools.knowledge import KnowledgeSearch


class SideEffect(StrEnum):
    """What a tool does to the world: nothing, reads it, or changes it."""

    NONE = "none"
    READ = "read"
    WRITE = "write"


class Risk(StrEnum):
    """How much harm a wrong call can do; the policy gate reads it."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ToolError(Exception):
    """A domain failure the model should see and work around (unknown order, bad state)."""


class Secrets(Protocol):
    """Resolves a secret reference (``env:NAME``, ``file:PATH``) for one tenant.

    Values are handed to the tool only; they never appear in results, events or logs.
    """

    def resolve(self, ref: str, *, tenant: str) -> str: ...


class NoSecrets:
    """The resolver of a context built without one: every lookup fails."""

    def resolve(self, ref: str, *, tenant: str) -> str:
        """Always raises ``ToolError``."""
        raise ToolError(f"no secrets are configured (asked for {ref.split(':', 1)[0]} ref)")


@dataclass(frozen=True)
class ToolContext:
    """What an implementation receives besides its arguments.

    ``idempotency_key`` is stable for one logical call (thread + tool call id), so a write
    that is retried after a crash finds its own earlier row instead of writing a second one.
    ``settings`` are the settings of the tool's own pack (e.g. the demo pack's database);
    ``knowledge`` is the document store ``search_knowledge`` reads, when one is configured.
    """

    idempotency_key: str
    tenant: str = "default"
    principal: str = ""
    run_id: str = ""
    thread_id: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Secrets = field(default_factory=NoSecrets)
    knowledge: KnowledgeSearch | None = None

    def secret(self, ref: str) -> str:
        """The value behind a secret reference, for this context's tenant."""
        return self.secrets.resolve(ref, tenant=self.tenant)


ToolFunc = Callable[[ToolContext, Any], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]
Reconciler = Callable[
    [ToolContext], Mapping[str, Any] | Awaitable[Mapping[str, Any] | None] | None]
_WIRE_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ToolSpec:
    """One tool: pydantic arguments, a description the model reads, side effect and risk.

    ``untrusted_output`` marks tools whose results carry free text from documents or outside
    parties; what an agent writes after reading them is stored as untrusted memory.
    """

    name: str
    description: str
    args_model: type[BaseModel]
    side_effect: SideEffect
    risk: Risk
    func: ToolFunc
    reconcile: Reconciler | None = None
    """For writes: find what an earlier attempt with the same idempotency key wrote, if
    anything. None means the tool cannot tell, so an unconfirmed call needs a human."""
    untrusted_output: bool = False
    source: str = "builtin"
    """Where the tool comes from: ``builtin``, ``pack:NAME`` or ``mcp:SERVER``."""
    idempotent: bool | None = None
    """The tool says a repeated identical call has no further effect (MCP idempotentHint)."""

    @property
    def wire_name(self) -> str:
        """The name models call it by: provider APIs allow only ``[A-Za-z0-9_-]``."""
        return str(_WIRE_NAME.sub("__", self.name))[:64]

    def openai_schema(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {
                "name": self.wire_name,
                "description": self.description,
                "parameters": json_schema(self.args_model),
            },
        }

    def validate(self, args: Mapping[str, Any]) -> BaseModel:
        """Parse raw arguments; raises ``pydantic.ValidationError``."""
        return self.args_model.model_validate(dict(args))

    def run(self, ctx: ToolContext, args: BaseModel) -> dict[str, Any]:
        """Execute with already-validated arguments (an async tool runs to completion)."""
        out = self.func(ctx, args)
        if inspect.isawaitable(out):
            out = asyncio.run(_settle(out))
        return dict(out)

    async def arun(self, ctx: ToolContext, args: BaseModel) -> dict[str, Any]:
        """Execute inside the event loop: async tools are awaited, sync ones use a thread."""
        out = (self.func(ctx, args) if _is_async(self.func)
               else await asyncio.to_thread(self.func, ctx, args))
        if inspect.isawaitable(out):
            out = await out
        return dict(out)

    async def areconcile(self, ctx: ToolContext) -> Mapping[str, Any] | None:
        """What an earlier attempt under ``ctx.idempotency_key`` wrote, if anything."""
        assert self.reconcile is not None
        out = (self.reconcile(ctx) if _is_async(self.reconcile)
               else await asyncio.to_thread(self.reconcile, ctx))
        if inspect.isawaitable(out):
            out = await out
        return out


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None))  # noqa: B004 - callable objects with async __call__


async def _settle(aw: Awaitable[Mapping[str, Any]]) -> Mapping[str, Any]:
    return await aw


@functools.cache
def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model class's JSON schema, built once. Building one takes milliseconds and the
    loop sends schemas on every model call (tool arguments, the report tool, structured
    output); it never changes for a class. Shared: callers must not mutate it."""
    return model.model_json_schema()


def args_sha256(args: Mapping[str, Any]) -> str:
    """Stable hash of a call's arguments (key order does not matter)."""
    blob = json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def validation_message(err: ValidationError) -> str:
    """A compact, model-readable summary of a validation error."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)
