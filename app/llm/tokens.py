"""Token counts by litellm's tokenizer for a model: what the scripted models (and the eval
suite's mocked wire) report as usage, so their cost figures follow the same counts a real
deployment of that model would bill. Model names litellm does not know (``scripted/small``)
get litellm's default tokenizer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graphs.ports import ToolCall


def _counter() -> Any:
    from app.llm.litellm_provider import load_litellm

    return load_litellm().token_counter


def prompt_tokens(model: str, messages: Sequence[Mapping[str, Any]],
                  tools: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Tokens of a request's messages (and tool schemas) on ``model``."""
    return max(1, int(_counter()(model=model, messages=[dict(m) for m in messages],
                                 tools=list(tools) if tools else None)))


def completion_tokens(model: str, content: str | None,
                      tool_calls: Sequence[ToolCall] = ()) -> int:
    """Tokens of a reply: its text and the name and arguments of each tool call."""
    text = (content or "") + "".join(c.name + c.arguments for c in tool_calls)
    return max(1, int(_counter()(model=model, text=text))) if text else 1
