"""Token counts by litellm's tokenizer for a model: what the scripted models (and the eval
suite's mocked wire) report as usage, so their cost figures follow the same counts a real
deployment of that model would bill. Model names litellm does not know (``scripted/small``)
get litellm's default tokenizer."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from graphs.ports import ModelRequest, ToolCall


def _counter() -> Any:
    from app.llm.litellm_provider import load_litellm

    return load_litellm().token_counter


def prompt_tokens(model: str, messages: Sequence[Mapping[str, Any]],
                  tools: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Tokens of a request's messages (and tool schemas) on ``model``, as litellm counts the
    whole request. litellm's count is a sum over the messages plus a term for the tool
    schemas and the reply's priming, so each message is counted once and remembered by its
    JSON: a run's prompts repeat their system message and, in a specialist's loop, every
    earlier turn (and each request is counted for its reservation and again for its usage).
    """
    schemas = json.dumps(list(tools), sort_keys=True, default=str) if tools else ""
    return _counted(model, messages, schemas)


def request_tokens(model: str, request: ModelRequest) -> int:
    """:func:`prompt_tokens` of a request, its tool schemas serialised once per request."""
    return _counted(model, request.messages, request.tools_json)


def _counted(model: str, messages: Sequence[Mapping[str, Any]], schemas: str) -> int:
    with_system = any(m.get("role") == "system" for m in messages)
    total = _extra_tokens(model, schemas, with_system)
    for m in messages:
        total += _message_tokens(model, _key(m))
    return max(1, total)


_PLAIN = frozenset({"role", "content", "name", "tool_call_id", "tool_calls"})
Key = tuple[tuple[str, ...], Any, Any, Any, Any, str | None] | str


def _key(m: Mapping[str, Any]) -> Key:
    """What a message is remembered by: its fields as they are for a chat message of text
    (only the tool calls serialised), else the whole message as JSON."""
    content = m.get("content")
    if m.keys() <= _PLAIN and (content is None or isinstance(content, str)):
        calls = m.get("tool_calls")
        return (tuple(m), m.get("role"), content, m.get("name"), m.get("tool_call_id"),
                None if calls is None else json.dumps(calls, sort_keys=True, default=str))
    return json.dumps(dict(m), sort_keys=True, default=str)


def _message_of(key: Key) -> dict[str, Any]:
    if isinstance(key, str):
        return dict(json.loads(key))
    fields, role, content, name, call_id, calls = key
    values = {"role": role, "content": content, "name": name, "tool_call_id": call_id,
              "tool_calls": None if calls is None else json.loads(calls)}
    return {f: values[f] for f in fields}


@functools.lru_cache(maxsize=4096)
def _message_tokens(model: str, key: Key) -> int:
    return int(_counter()(model=model, messages=[_message_of(key)],
                          count_response_tokens=True))  # the message alone, no extras


@functools.lru_cache(maxsize=256)
def _extra_tokens(model: str, schemas: str, with_system: bool) -> int:
    """What a request adds to its messages' tokens: the reply's priming and the tools."""
    probe = [{"role": "system" if with_system else "user", "content": ""}]
    tools = json.loads(schemas) if schemas else None
    count = _counter()
    return (int(count(model=model, messages=probe, tools=tools))
            - int(count(model=model, messages=probe, count_response_tokens=True)))


def completion_tokens(model: str, content: str | None,
                      tool_calls: Sequence[ToolCall] = ()) -> int:
    """Tokens of a reply: its text and the name and arguments of each tool call."""
    text = (content or "") + "".join(c.name + c.arguments for c in tool_calls)
    return _text_tokens(model, text) if text else 1


@functools.lru_cache(maxsize=1024)
def _text_tokens(model: str, text: str) -> int:
    return max(1, int(_counter()(model=model, text=text)))
