"""Streamed model tokens as LangGraph Platform ``messages`` / ``messages-tuple`` stream parts.

``messages-tuple`` sends ``[message_chunk, metadata]`` per delta (what
``client.runs.stream(..., stream_mode="messages-tuple")`` yields); ``messages`` sends
``messages/metadata`` once per message, then ``messages/partial`` with the message so far.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from app.errors import InvalidRequest
from app.llm.stream import TokenDelta
from app.storage.store import RunRow

SUPPORTED_MODES = ("values", "updates", "custom", "messages", "messages-tuple")
TOKEN_MODES = frozenset({"messages", "messages-tuple"})


def check_modes(modes: list[str]) -> list[str]:
    """The modes, or a 422 naming the first one Foreman cannot stream."""
    for mode in modes:
        if mode not in SUPPORTED_MODES:
            raise InvalidRequest(f"stream_mode {mode!r} is not supported; supported: "
                                 f"{', '.join(SUPPORTED_MODES)}", field="stream_mode")
    return modes


def _node(role: str) -> str:
    return role.split(".", 1)[-1] if role.startswith("manager.") else "agent"


def message_id(run: RunRow, delta: TokenDelta) -> str:
    """One message per call attempt, stable across the deltas of that attempt."""
    return f"run-{run.id}-{delta.call_key.replace('/', '-')}-{delta.attempt}"


def ai_chunk(msg_id: str, content: str) -> dict[str, Any]:
    """An ``AIMessageChunk`` as LangChain serialises it."""
    return {"type": "AIMessageChunk", "id": msg_id, "content": content, "name": None,
            "additional_kwargs": {}, "response_metadata": {}, "tool_calls": [],
            "invalid_tool_calls": [], "tool_call_chunks": [], "usage_metadata": None}


def unstreamed(answer: str, streamed: str) -> str | None:
    """What follows ``streamed`` in ``answer`` (the model's reply is stored stripped, so the
    whitespace around what streamed does not count); None when the answer does not go on
    from it (a retried or replaced reply)."""
    head = streamed.strip()
    if not answer.startswith(head):
        return None
    rest, sent = answer[len(head):], streamed[len(streamed.rstrip()):]
    return rest[len(sent):] if rest.startswith(sent) else rest


class TokenParts:
    """Turns one run's deltas into stream parts for the modes asked for."""

    def __init__(self, run: RunRow, modes: list[str]) -> None:
        self.run = run
        self.modes = modes
        self.texts: dict[str, str] = {}
        self.answer: tuple[TokenDelta, str] | None = None  # the final answer's last attempt

    def metadata(self, delta: TokenDelta) -> dict[str, Any]:
        """LangGraph's per-chunk metadata."""
        return {"run_id": self.run.id, "thread_id": self.run.thread_id,
                "graph_id": self.run.team, "assistant_id": self.run.team,
                "langgraph_node": _node(delta.role), "foreman_role": delta.role,
                "ls_model_name": delta.model, "tags": []}

    def parts(self, delta: TokenDelta) -> Iterator[tuple[str, Any]]:
        """``(event, data)`` pairs for one delta."""
        msg_id = message_id(self.run, delta)
        if delta.role == "manager.final":
            if self.answer is None or message_id(self.run, self.answer[0]) != msg_id:
                self.answer = (delta, "")  # a new attempt starts a new message
            self.answer = (delta, self.answer[1] + delta.text)
        if "messages-tuple" in self.modes:
            yield "messages", [ai_chunk(msg_id, delta.text), self.metadata(delta)]
        if "messages" in self.modes:
            if msg_id not in self.texts:
                self.texts[msg_id] = ""
                yield "messages/metadata", {msg_id: {"metadata": self.metadata(delta)}}
            self.texts[msg_id] += delta.text
            yield "messages/partial", [ai_chunk(msg_id, self.texts[msg_id])]

    def rest(self, final_answer: str | None) -> Iterator[tuple[str, Any]]:
        """The end of the run's answer that no model streamed (the line Foreman adds under
        it, ``graphs/ending.py``), as one more delta of the answer's message, so the streamed
        text adds up to the stored answer. Nothing when the answer is not a continuation of
        what streamed (then ``values`` carries it)."""
        if self.answer is None or not final_answer:
            return
        last, streamed = self.answer
        rest = unstreamed(final_answer, streamed)
        if rest:
            yield from self.parts(replace(last, text=rest))

    def complete(self) -> Iterator[tuple[str, Any]]:
        """``messages/complete`` for every message streamed in ``messages`` mode."""
        if "messages" in self.modes:
            for msg_id, text in self.texts.items():
                yield "messages/complete", [{**ai_chunk(msg_id, text), "type": "ai"}]
