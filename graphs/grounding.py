"""What a step is about, and whether its tool calls were about it.

A step's instruction names the records it concerns ("look up order O-5003"). The ids it
names are found with the patterns of the agent's own tool arguments (``order_id`` matches
``^O-\\d{4}$``, ``service`` matches ``^[a-z][a-z0-9-]{1,62}$``), so nothing here knows
the demo's records. A step reported done needs a successful tool call whose arguments or
result mention one of those ids: reading another customer's ticket does not answer a
question about this customer's order.

A pattern with literal text (``O-``, ``INC-``) finds its ids anywhere in the text. One
without (a service name is any lowercase word) would take every word for an id, so it only
finds hyphenated tokens, only for required arguments, and only those the request itself
names: ``checkout-api`` in "restart checkout-api", never "the", "follow-up" or an optional
filter's value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tools.spec import ToolSpec

# A token that could be an id: letters or digits joined by hyphens, dots or underscores.
_TOKEN = re.compile(r"(?<![\w.-])[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9])?(?![\w-])")
_LITERAL_HEAD = re.compile(r"^\^?((?:[A-Za-z0-9_]|\\-|-)+)")


@dataclass(frozen=True)
class IdPattern:
    """One id-shaped tool argument: its pattern, and whether it may match bare words."""

    argument: str
    pattern: re.Pattern[str]
    literal: bool  # starts with literal text (``O-``): safe to search for anywhere

    def find(self, text: str) -> list[str]:
        """The ids of this kind in ``text``, in order of appearance."""
        found = []
        for token in _TOKEN.findall(text):
            token = token.rstrip(".")
            if not self.pattern.fullmatch(token):
                continue
            if not self.literal and "-" not in token.strip("-"):
                continue
            found.append(token)
        return found


def _string_patterns(schema: dict[str, Any]) -> str | None:
    """The pattern of a string property (also when it is written as ``anyOf`` with null)."""
    if isinstance(schema.get("pattern"), str):
        return str(schema["pattern"])
    for option in schema.get("anyOf", []):
        if isinstance(option, dict) and isinstance(option.get("pattern"), str):
            return str(option["pattern"])
    return None


def _compiled(pattern: str) -> re.Pattern[str] | None:
    body = pattern.removeprefix("^").removesuffix("$")
    try:
        return re.compile(body)
    except re.error:
        return None  # a JSON Schema dialect Python's re does not read: not an id we can find


def id_patterns(tools: Iterable[ToolSpec]) -> list[IdPattern]:
    """The id-shaped arguments of ``tools``: string arguments with a pattern. Arguments
    without literal text count only when required (a name the call is about, not a filter)."""
    seen: dict[str, IdPattern] = {}
    for spec in tools:
        params = spec.openai_schema()["function"]["parameters"]
        required = set(params.get("required", []))
        for name, prop in params.get("properties", {}).items():
            raw = _string_patterns(prop) if isinstance(prop, dict) else None
            if raw is None or raw in seen:
                continue
            compiled = _compiled(raw)
            head = _LITERAL_HEAD.match(raw)
            literal = bool(head and re.search(r"[A-Za-z0-9]", head.group(1)))
            if compiled is None or (not literal and name not in required):
                continue
            seen[raw] = IdPattern(argument=name, pattern=compiled, literal=literal)
    return list(seen.values())


def step_about(patterns: list[IdPattern], goal: str, instruction: str, task: str) -> list[str]:
    """The ids a step is about: named by its goal or instruction (bare-word kinds only when
    the request names them too)."""
    text = f"{goal}\n{instruction}"
    found: list[str] = []
    for p in patterns:
        named = p.find(text)
        if not p.literal:
            in_task = set(p.find(task))
            named = [i for i in named if i in in_task]
        found += [i for i in named if i not in found]
    return found


def mentioned(ids: Iterable[str], *values: Any) -> list[str]:
    """Which of ``ids`` occur, as whole tokens, in ``values`` (call arguments, results)."""
    blob = " ".join(v if isinstance(v, str) else json.dumps(v, default=str) for v in values)
    return [i for i in ids
            if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", blob) is not None]
