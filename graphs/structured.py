"""Ask a model for structured output; repair, retry once, and never crash on its text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

import prompts
from graphs.errors import LedgerError
from graphs.ledger import parse_model
from graphs.ports import Message, ModelRequest, ModelRouter
from tools.spec import json_schema

M = TypeVar("M", bound=BaseModel)


async def ask_structured(
    router: ModelRouter,
    *,
    role: str,
    messages: list[Message],
    schema: type[M],
    call_key: str,
    signals: Mapping[str, Any],
) -> tuple[M | None, list[str]]:
    """Return the parsed object (or None) and notes on any problem met on the way.

    Broken JSON is repaired locally first; output that still fails validation gets one
    retry that shows the model its error and tells the router the step failed on schema.
    """
    shape = json_schema(schema)
    first = await router.complete(
        ModelRequest(role=role, messages=messages, call_key=f"{call_key}/a0",
                     json_output=True, signals=signals, json_schema=shape)
    )
    try:
        return parse_model(first.content, schema), []
    except LedgerError as e:
        problem = f"{role} output was invalid ({e})"
    retry = [
        *messages,
        {"role": "assistant", "content": first.content or ""},
        {"role": "user", "content": prompts.render("repair.j2", error=problem)},
    ]
    second = await router.complete(
        ModelRequest(role=role, messages=retry, call_key=f"{call_key}/a1", json_output=True,
                     signals={**signals, "failure": "schema_invalid", "attempt": 1},
                     json_schema=shape)
    )
    try:
        return parse_model(second.content, schema), [f"{problem}; repaired on retry"]
    except LedgerError as e:
        return None, [problem, f"{role} retry was invalid too ({e})"]
