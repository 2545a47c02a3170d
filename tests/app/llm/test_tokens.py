"""Prompt token counts, counted a message at a time and remembered, equal litellm's count of
the whole request."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.llm.litellm_provider import load_litellm
from app.llm.tokens import prompt_tokens

TOOLS = [{"type": "function", "function": {
    "name": "lookup_order", "description": "An order by id.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                   "required": ["order_id"]}}}]
text = st.text(min_size=0, max_size=300)
message = st.one_of(
    st.builds(lambda c: {"role": "system", "content": c}, text),
    st.builds(lambda c: {"role": "user", "content": c}, text),
    st.builds(lambda c, a: {"role": "assistant", "content": c or None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "lookup_order", "arguments": a}}]}, text, text),
    st.builds(lambda c: {"role": "tool", "tool_call_id": "call_1", "content": c}, text),
    st.builds(lambda c, n: {"role": "user", "name": n, "content": c}, text,
              st.sampled_from(["ada", "grace"])),
    st.builds(lambda c: {"role": "user", "content": [{"type": "text", "text": c}]}, text),
)


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(message, min_size=1, max_size=6), with_tools=st.booleans(),
       model=st.sampled_from(["gpt-4o-mini", "scripted/small", "claude-3-5-haiku-20241022"]))
def test_prompt_tokens_equal_litellms_count_of_the_whole_request(
        messages: list[dict[str, Any]], with_tools: bool, model: str) -> None:
    tools = TOOLS if with_tools else None
    whole = load_litellm().token_counter(model=model, messages=messages, tools=tools)
    assert prompt_tokens(model, messages, tools) == max(1, int(whole))
    assert prompt_tokens(model, messages, tools) == max(1, int(whole))  # remembered


def test_a_requests_count_serialises_its_tools_once_and_equals_the_plain_count() -> None:
    from app.llm.tokens import request_tokens
    from graphs.ports import ModelRequest

    request = ModelRequest(role="specialist.researcher", call_key="k", tools=TOOLS,
                           messages=[{"role": "system", "content": "s"},
                                     {"role": "user", "content": "find O-5002"}])
    assert request_tokens("gpt-4o-mini", request) == prompt_tokens(
        "gpt-4o-mini", request.messages, TOOLS)
    assert request.__dict__["tools_json"] == request.tools_json  # kept on the request
    bare = ModelRequest(role="manager.plan", call_key="p", messages=request.messages)
    assert bare.tools_json == "" and request_tokens("gpt-4o-mini", bare) == prompt_tokens(
        "gpt-4o-mini", request.messages)
