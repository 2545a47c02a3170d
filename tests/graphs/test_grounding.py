"""A step reported done must have touched what it is about: the ids its instruction names."""

from __future__ import annotations

import json
from typing import Any

from app.config.settings import Settings
from app.llm.provider import ProviderReply
from app.llm.scripted import ScriptedProvider
from app.services import open_services
from graphs.grounding import id_patterns, mentioned, step_about
from graphs.ports import ModelRequest, ToolCall
from tests.graphs.test_manager import with_limits
from tools.incident import INCIDENT_TOOLS
from tools.knowledge import SEARCH_KNOWLEDGE
from tools.support import SUPPORT_TOOLS

WHERE_TASK = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"
INCIDENT_TASK = "checkout-api is returning 500 errors; investigate and fix it"


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == kind]


def call(name: str, n: int, **args: Any) -> ProviderReply:
    return ProviderReply(content=None, tool_calls=[ToolCall(
        id=f"call_{name}_{n}", name=name, arguments=json.dumps(args))])


def report(summary: str, n: int, **figures: Any) -> ProviderReply:
    return call("report", n, status="done", summary=summary, figures=figures)


def last_tool_source(req: ModelRequest) -> str:
    last = req.messages[-1]
    return str(last["content"]).split('"', 2)[1] if last["role"] == "tool" else ""


def test_grounding_ids_come_from_the_agents_tool_arguments() -> None:
    support = id_patterns(SUPPORT_TOOLS)
    assert step_about(support, "Look up order O-5003 for customer C-1002",
                      "Check ticket T-9002 too", WHERE_TASK) == ["C-1002", "O-5003", "T-9002"]
    assert step_about(support, "Look up the order", "", WHERE_TASK) == []
    assert step_about(support, "Check order O-50031", "", "") == []  # not an order id
    # A kind without literal text (a service name) counts only when hyphenated and named
    # by the request: never "follow-up", never an ordinary word.
    incident = id_patterns(INCIDENT_TOOLS)
    assert step_about(incident, "Check checkout-api's status and post a follow-up",
                      "", INCIDENT_TASK) == ["checkout-api"]
    assert step_about(incident, "Post a follow-up status update", "", INCIDENT_TASK) == []
    # An optional filter (the knowledge collection) is not an id.
    assert id_patterns([SEARCH_KNOWLEDGE]) == []


def test_grounding_mentioned_matches_whole_ids_in_arguments_and_results() -> None:
    result = {"id": "T-9001", "customer_id": "C-1001", "order_id": "O-5002"}
    assert mentioned(["O-5003", "C-1002"], {"ticket_id": "T-9001"}, result) == []
    assert mentioned(["O-5003"], {"order_id": "O-5003"}, {}) == ["O-5003"]
    assert mentioned(["O-500"], {"order_id": "O-5003"}) == []


async def test_grounding_done_backed_by_another_records_call_is_not_done(
        settings: Settings) -> None:
    # The case a real small model produced: the researcher read ticket T-9001 (another
    # customer's order) and reported order O-5003 "open" from it — every time it was asked.
    n = {"calls": 0}

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role != "specialist.researcher":
            return None
        n["calls"] += 1
        if last_tool_source(req) == "tool:get_ticket":
            return report("Order O-5003 is open.", n["calls"])
        return call("get_ticket", n["calls"], ticket_id="T-9001")

    settings = with_limits(settings, "support", max_rounds=4)
    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(WHERE_TASK, "support")
        events = s.store.events(result.run_id)

    started = [a for a in of(events, "agent_started") if a["agent"] == "researcher"]
    assert started and {"C-1002", "O-5003"} <= set(started[0]["about"])
    researcher = [f for f in of(events, "agent_finished") if f["agent"] == "researcher"]
    assert researcher and all(f["status"] == "unclear" and not f["ok"] for f in researcher)
    assert ("NOT VERIFIED: reported done, but none of this step's successful tool calls "
            "(get_ticket) involved C-1002 or O-5003") in researcher[0]["summary"]
    # The agent was told once, through the report tool, before its step ended unclear.
    refused = [r for r in of(events, "tool_result")
               if r["tool"] == "report" and not r["ok"]]
    assert refused and refused[0]["error"].startswith(
        "report not accepted: none of this step's successful tool calls (get_ticket)")
    assert result.stop_reason != "satisfied" and result.status == "error"
    assert "lookup_order" not in [c["tool"] for c in of(events, "tool_called")]


async def test_grounding_agent_sent_back_looks_up_the_right_record(
        settings: Settings, sandbox_rows: Any) -> None:
    n = {"calls": 0}

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role != "specialist.researcher":
            return None
        n["calls"] += 1
        source = last_tool_source(req)
        if source == "tool:get_ticket":
            return report("Order O-5003 is open.", n["calls"])
        if source == "tool:report":  # the refusal: look up the order itself
            return call("lookup_order", n["calls"], order_id="O-5003")
        if source == "tool:lookup_order":
            return report("Order O-5003 is in transit.", n["calls"], order_status="shipped")
        return call("get_ticket", n["calls"], ticket_id="T-9001")

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(WHERE_TASK, "support")
        events = s.store.events(result.run_id)

    first = next(f for f in of(events, "agent_finished") if f["agent"] == "researcher")
    assert first["status"] == "done" and "in transit" in first["summary"]
    tools = [c["tool"] for c in of(events, "tool_called")]
    assert tools.index("get_ticket") < tools.index("lookup_order")
    assert result.status == "success"
    assert sandbox_rows("SELECT customer_id FROM outbox") == [{"customer_id": "C-1002"}]
