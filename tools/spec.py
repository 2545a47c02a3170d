"""Typed tool specifications: what a tool takes, what it touches, how risky it is."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class ToolContext:
    """What an implementation receives besides its arguments.

    ``idempotency_key`` is stable for one logical call (thread + tool call id), so a write
    that is retried after a crash finds its own earlier row instead of writing a second one.
    ``knowledge`` is the document store ``search_knowledge`` reads, when one is configured.
    """

    db_path: str
    idempotency_key: str
    tenant: str = "default"
    knowledge: KnowledgeSearch | None = None


ToolFunc = Callable[[ToolContext, Any], Mapping[str, Any]]
Reconciler = Callable[[ToolContext], Mapping[str, Any] | None]


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

    def openai_schema(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": _json_schema(self.args_model),
            },
        }

    def validate(self, args: Mapping[str, Any]) -> BaseModel:
        """Parse raw arguments; raises ``pydantic.ValidationError``."""
        return self.args_model.model_validate(dict(args))

    def run(self, ctx: ToolContext, args: BaseModel) -> dict[str, Any]:
        """Execute with already-validated arguments."""
        return dict(self.func(ctx, args))


@functools.cache
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    # Building a JSON schema takes milliseconds and specialists send theirs on every call;
    # it never changes for a model class. Shared: callers must not mutate it.
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
