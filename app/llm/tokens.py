"""Token counts by litellm's tokenizer for a model: what the scripted models (and the eval
suite's mocked wire) report as usage, so their cost figures follow the same counts a real
deployment of that model would bill. Model names litellm does not know (``scripted/small``)
get litellm's default tokenizer."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from graphs.ports import ToolCall


def _counter() -> Any:
    from app.llm.litellm_provider import load_litellm

    return load_litellm().token_counter


def prompt_tokens(model: str, messages: Sequence[Mapping[str, Any]],
                  tools: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Tokens of a request's messages (and tool schemas) on ``model``. A request is counted
    for its reservation and again for its usage: the count is remembered by the request's
    JSON, which takes a fraction of the tokenizer's time."""
    payload = json.dumps([[dict(m) for m in messages], list(tools) if tools else None],
                         default=str)
    return _prompt_tokens(model, payload)


@functools.lru_cache(maxsize=256)
def _prompt_tokens(model: str, payload: str) -> int:
    messages, tools = json.loads(payload)
    return max(1, int(_counter()(model=model, messages=messages, tools=tools or None)))


def completion_tokens(model: str, content: str | None,
                      tool_calls: Sequence[ToolCall] = ()) -> int:
    """Tokens of a reply: its text and the name and arguments of each tool call."""
    text = (content or "") + "".join(c.name + c.arguments for c in tool_calls)
    return max(1, int(_counter()(model=model, text=text))) if text else 1
