"""World checks through the project's own read tools: after a run, call a read tool (an MCP
server's, a pack's) and compare what it answers with what the scenario expects.

Scenarios of a user's project have no demo sandbox to look at; their world is behind their
tools. ``expect.world_calls`` lists read calls and what each must show:

```yaml
expect:
  world_calls:
    - tool: helpdesk.list_notes
      args: {customer_id: CU-1}
      result: {notes: [{text: Called about the late delivery}]}   # a subset of the answer
      mentions: [Called about]                                    # text in the answer
      lacks: [refund]                                             # text not in it
```

Only read tools may be called (a check must not change the world it checks). Calls go
straight to the tool, not through the run's ledger, policy or audit: they are the judge's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.registry import ToolRegistry
from tools.spec import (
    NoSecrets,
    Secrets,
    SideEffect,
    ToolContext,
    ToolError,
    validation_message,
)


class WorldCall(BaseModel):
    """One read call after the run and what its answer must show.

    ``result`` is matched as a subset of the answer's structured content (or of the whole
    answer when there is none): mappings key by key, lists item by item (each wanted item
    matches some answered item). ``ok: false`` expects the tool to answer with an error.
    """

    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    ok: bool = True
    result: dict[str, Any] | None = None
    mentions: list[str] = Field(default_factory=list)
    lacks: list[str] = Field(default_factory=list)


async def check_world(calls: list[WorldCall], registry: ToolRegistry,
                      secrets: Secrets | None = None) -> list[str]:
    """The problems found (empty when every call showed what it should)."""
    problems = []
    for i, call in enumerate(calls):
        problem = await _check(call, registry, secrets or NoSecrets(), f"world-check:{i}")
        if problem:
            problems.append(f"world call {call.tool} {json.dumps(call.args)}: {problem}")
    return problems


def fail_record(record: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """A scored record with the world calls' problems added (a problem fails the run)."""
    if problems:
        record["problems"] = [*record.get("problems", []), *problems]
        record["task_success"] = False
        record["passed"] = False
    return record


async def _check(call: WorldCall, registry: ToolRegistry, secrets: Secrets,
                 key: str) -> str | None:
    spec = registry.find(call.tool)
    if spec is None:
        return "no such tool in this project"
    if spec.side_effect != SideEffect.READ:
        return f"{spec.name} is a {spec.side_effect} tool; world checks only read"
    ctx = ToolContext(idempotency_key=key, tenant="default", principal="eval",
                      run_id="world-check", thread_id=key.rsplit(":", 1)[0],
                      settings=registry.settings_of(spec), secrets=secrets)
    try:
        data: Mapping[str, Any] = await spec.arun(ctx, spec.validate(call.args))
        ok = True
    except ValidationError as e:
        return f"invalid arguments: {validation_message(e)}"
    except ToolError as e:
        data, ok = {"error": str(e)}, False
    if ok != call.ok:
        return (f"expected {'an answer' if call.ok else 'an error'}, got "
                f"{'an answer' if ok else 'an error'}: {_short(data)}")
    if call.result is not None:
        answered = data.get("structured", data) if isinstance(data, Mapping) else data
        where = _mismatch(call.result, answered, "")
        if where is not None:
            return f"result differs at {where or '(root)'}: {_short(answered)}"
    text = json.dumps(data, default=str, ensure_ascii=False).lower()
    missing = [m for m in call.mentions if m.lower() not in text]
    if missing:
        return f"answer lacks {missing}: {_short(data)}"
    present = [m for m in call.lacks if m.lower() in text]
    if present:
        return f"answer mentions {present}: {_short(data)}"
    return None


def _mismatch(want: Any, got: Any, path: str) -> str | None:
    """Where ``want`` is not a subset of ``got`` (None when it is)."""
    if isinstance(want, Mapping):
        if not isinstance(got, Mapping):
            return path
        for k, v in want.items():
            if k not in got:
                return f"{path}.{k}".lstrip(".")
            where = _mismatch(v, got[k], f"{path}.{k}".lstrip("."))
            if where is not None:
                return where
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return path
        for n, item in enumerate(want):
            if not any(_mismatch(item, g, "") is None for g in got):
                return f"{path}[{n}]"
        return None
    if isinstance(want, int | float) and isinstance(got, int | float) and \
            not isinstance(want, bool) and not isinstance(got, bool):
        return None if abs(float(want) - float(got)) < 1e-9 else path
    return None if want == got else path


def _short(data: Any) -> str:
    text = json.dumps(data, default=str, ensure_ascii=False)
    return text if len(text) <= 300 else text[:300] + "..."
