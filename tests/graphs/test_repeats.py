"""A tool call repeated after it was refused or failed is answered, not run, and bounded."""

from __future__ import annotations

import json
from typing import Any

from app.config.settings import Settings
from app.llm.provider import ProviderReply
from app.llm.scripted import ScriptedProvider
from app.services import open_services
from graphs.ports import ModelRequest, ToolCall
from graphs.repeats import call_fingerprint

REFUND_TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


def stubborn(agent: str, tool: str, args: dict[str, Any]) -> tuple[Any, list[str]]:
    """Behaviour: ``agent``'s first step sends this same call on every model call (a new
    call id each time, keys in a new order every other time); later steps follow the
    playbook. Also returns the tool messages that step's model calls were shown."""
    shown: list[str] = []
    first_step: list[str] = []

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role != f"specialist.{agent}":
            return None
        step = req.call_key.rsplit("/s", 1)[0]
        first_step[:] = first_step or [step]
        if step != first_step[0]:
            return None
        shown[:] = [str(m["content"]) for m in req.messages if m["role"] == "tool"]
        ordered = args if len(shown) % 2 == 0 else dict(reversed(list(args.items())))
        return ProviderReply(content=None, tool_calls=[ToolCall(
            id=f"call_same_{len(shown)}", name=tool, arguments=json.dumps(ordered))])

    return behaviour, shown


def repeats_of(events: list[dict[str, Any]], tool: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == "tool_result"
            and e["data"]["tool"] == tool and "repeat_of" in e["data"]]


async def test_repeats_of_a_refused_refund_are_answered_then_block_the_step(
        settings: Settings, sandbox_rows: Any) -> None:
    args = {"order_id": "O-5002", "amount_usd": 0, "reason": "already fully refunded"}
    behaviour, shown = stubborn("billing", "issue_refund", args)
    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")
        events = s.store.events(result.run_id)

    first = [e["data"] for e in events if e["type"] == "tool_result"
             and e["data"]["tool_call_id"] == "call_same_0"]
    assert first[0]["executed"] is False and "invalid arguments" in first[0]["error"]
    repeats = repeats_of(events, "issue_refund")
    assert [(r["repeat_of"], r["repeats"], r["step_blocked"]) for r in repeats] == [
        ("call_same_0", 1, False), ("call_same_0", 2, True)]
    assert all(r["executed"] is False for r in repeats)
    assert repeats[0]["error"].startswith("this exact call was already refused: invalid "
                                          "arguments: amount_usd")
    assert repeats[0]["error"].endswith("Change the arguments or report blocked")
    # The model saw the note after its first repeat, and was not asked a fourth time.
    assert "this exact call was already refused" in shown[-1]
    assert len(shown) == 2
    finished = [e["data"] for e in events if e["type"] == "agent_finished"
                and e["data"]["agent"] == "billing"]
    assert finished[0]["status"] == "blocked"
    assert finished[0]["summary"].startswith("BLOCKED: issue_refund was refused (invalid "
                                             "arguments: amount_usd")
    assert "repeated the same call 2 times" in finished[0]["summary"]
    assert not any(e["type"] == "tool_called" and e["data"]["tool_call_id"].startswith(
        "call_same") for e in events)


async def test_repeat_of_a_failed_call_runs_the_tool_once(settings: Settings) -> None:
    behaviour, shown = stubborn("researcher", "lookup_order", {"order_id": "O-9999"})
    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")
        events = s.store.events(result.run_id)
        ledger = [s.store.tool_get(f"{result.thread_id}:call_same_{i}") for i in range(3)]

    called = [e["data"] for e in events if e["type"] == "tool_called"
              and e["data"]["tool_call_id"].startswith("call_same")]
    assert [c["tool_call_id"] for c in called] == ["call_same_0"]
    assert ledger[0] is not None and not ledger[0]["ok"]  # it ran, once, and failed
    assert ledger[1] is None and ledger[2] is None
    repeats = repeats_of(events, "lookup_order")
    assert [r["repeats"] for r in repeats] == [1, 2]
    assert repeats[0]["error"].startswith(
        "this exact call already failed: unknown order O-9999")
    finished = [e["data"] for e in events if e["type"] == "agent_finished"
                and e["data"]["agent"] == "researcher"]
    assert finished[0]["status"] == "blocked"
    assert finished[0]["summary"].startswith(
        "BLOCKED: lookup_order failed (unknown order O-9999)")
    assert len(shown) == 2 and "this exact call already failed" in shown[-1]
    assert result.status == "success"  # the run went on with the next step


def test_call_fingerprint_ignores_key_order_and_tells_arguments_apart() -> None:
    a = call_fingerprint("issue_refund", '{"order_id": "O-5002", "amount_usd": 0}')
    b = call_fingerprint("issue_refund", '{"amount_usd": 0, "order_id": "O-5002"}')
    c = call_fingerprint("issue_refund", '{"amount_usd": 10, "order_id": "O-5002"}')
    assert a == b
    assert a != c
    assert a != call_fingerprint("lookup_order", '{"order_id": "O-5002", "amount_usd": 0}')
    assert call_fingerprint("x", "not json") == call_fingerprint("x", "not json")
    assert call_fingerprint("x", "not json") != call_fingerprint("x", "not json!")
