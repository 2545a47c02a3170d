"""A gate pass that ran its call and stopped before its checkpoint is re-run on the decision
taken then: the call is finished from the tool ledger, even once the policy has changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from app.config.settings import Settings
from app.runs.teams import team_spec
from graphs.ports import (
    GateAction,
    GateDecision,
    GateRequest,
    ModelRequest,
    ModelResponse,
    RunContext,
    ToolCall,
    ToolInvocation,
    ToolOutcome,
    Usage,
)
from graphs.specialist import build_specialist
from tests.fakes import EventLog, FakeClock, demo_registry

ARGS = {"customer_id": "C-1001"}


class Script:
    """The researcher looks the customer up, then reports done."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if not any(m["role"] == "tool" for m in request.messages):
            return ModelResponse(None, [ToolCall("call-1", "lookup_customer", json.dumps(ARGS))],
                                 Usage(), "scripted/small")
        report = {"status": "done", "summary": "C-1001 is Ada Lovelace, tier gold",
                  "facts": ["C-1001 is gold tier"]}
        return ModelResponse(None, [ToolCall("call-2", "report", json.dumps(report))],
                             Usage(), "scripted/small")


class Ledger:
    """A tool ledger in memory: a recorded key replays its stored result."""

    def __init__(self, recorded: dict[str, dict[str, Any]]) -> None:
        self.rows = recorded
        self.ran: list[str] = []

    async def recorded(self, key: str) -> bool:
        return key in self.rows

    async def execute(self, invocation: ToolInvocation) -> ToolOutcome:
        if invocation.key in self.rows:
            return ToolOutcome(ok=True, data=self.rows[invocation.key], replayed=True)
        self.ran.append(invocation.key)
        self.rows[invocation.key] = {"id": "C-1001", "name": "Ada Lovelace"}
        return ToolOutcome(ok=True, data=self.rows[invocation.key])


class Disabled:
    """The policy after an admin disabled every tool (the kill switch's verdict)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def check(self, request: GateRequest) -> GateDecision:
        self.asked.append(request.tool)
        return GateDecision(GateAction.DENY, reason="disabled by an admin", rule="kill_switch")


async def _step(settings: Settings, tmp_path: Path, ledger: Ledger,
                gate: Disabled) -> tuple[dict[str, Any], EventLog]:
    team = team_spec(settings, "support", demo_registry(tmp_path / "sandbox.db"))
    graph = build_specialist(team).compile(checkpointer=InMemorySaver())
    events = EventLog()
    context = RunContext(router=Script(), tools=ledger, gate=gate, events=events,
                         clock=FakeClock())
    out = await graph.ainvoke(
        {"round": 1, "index": 0, "step_id": "S1", "agent": "researcher",
         "instruction": "Look up customer C-1001", "brief": "", "about": ["C-1001"],
         "messages": [], "steps": 0, "queue": [], "cleared": None, "tools_used": []},
        {"configurable": {"thread_id": "t-1"}}, context=context)
    return out, events


@pytest.mark.parametrize("recorded", [True, False])
async def test_specialist_rerun_of_a_started_call_keeps_the_decision_taken_then(
        settings: Settings, tmp_path: Path, recorded: bool) -> None:
    rows = {"t-1:call-1": {"id": "C-1001", "name": "Ada Lovelace"}} if recorded else {}
    ledger, gate = Ledger(rows), Disabled()
    out, events = await _step(settings, tmp_path, ledger, gate)
    results = events.of("tool_result")
    assert ledger.ran == []  # nothing ran anew either way
    if recorded:  # the earlier pass's call is finished from the ledger, not denied
        assert gate.asked == []
        assert results[0]["executed"] is True and results[0]["replayed"] is True
        assert out["tools_used"][0]["ok"] is True and out["status"] == "done"
    else:  # a call not started yet meets today's policy
        assert gate.asked == ["lookup_customer"]
        assert results[0]["executed"] is False and "kill_switch" in results[0]["error"]
        assert out["status"] != "done"
