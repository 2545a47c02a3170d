"""The orchestrator enforces the plan: the cases a real small model produced, scripted."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from app.config.settings import Settings
from app.llm.provider import ProviderReply
from app.llm.scripted import ScriptedProvider
from app.runs.teams import team_spec
from app.services import open_services
from graphs.dispatch import AUTO_REASON
from graphs.ending import changes_made
from graphs.ports import ModelRequest
from graphs.views import parse_status_lines
from tests.fakes import demo_registry, event_types, progress_reply
from tests.graphs.test_manager import REFUND_TASK, with_limits

EMAIL_S3 = "Email customer C-1001 that order O-5002 has been refunded in full ($189.00)."
INCIDENT_TASK = "checkout-api is returning 500 errors; investigate and fix it"
WHERE_TASK = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"


def prompt_of(req: ModelRequest) -> str:
    return str(req.messages[-1]["content"])


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == kind]


def tool_order(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["tool"] for e in events if e["type"] == "tool_called"]


async def test_discipline_step_named_before_its_dependencies_is_not_dispatched(
        settings: Settings, sandbox_rows: Any) -> None:
    # Round 1 names only the email step (S3), whose refund (S2) does not exist yet.
    prompts_seen: list[str] = []

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role != "manager.progress":
            return None
        prompts_seen.append(prompt_of(req))
        if len(prompts_seen) == 1:
            return ProviderReply(content=progress_reply(steps=[
                {"step_id": "S3", "agent": "communications", "instruction": EMAIL_S3}]))
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")
        events = s.store.events(result.run_id)

    deferred = of(events, "step_deferred")
    assert deferred[0]["step_id"] == "S3" and deferred[0]["waiting_on"] == ["S2"]
    assert "step S3 (communications) was not dispatched" in prompts_seen[1]
    first = next(e["data"] for e in events if e["type"] == "agent_started")
    assert (first["agent"], first["step_id"]) == ("researcher", "S1")
    tools = tool_order(events)
    assert tools.index("issue_refund") < tools.index("send_email")
    assert result.status == "success"
    assert sandbox_rows("SELECT COUNT(*) AS n FROM outbox") == [{"n": 1}]


async def test_discipline_empty_next_steps_with_ready_steps_dispatches_them(
        settings: Settings, sandbox_rows: Any) -> None:
    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role != "manager.progress":
            return None
        status = parse_status_lines(prompt_of(req).split("<plan_status>")[1])
        if all(s["state"] == "done" for s in status):
            return None  # the scripted ledger then says satisfied
        return ProviderReply(content=progress_reply(steps=[]))

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")
        events = s.store.events(result.run_id)

    dispatched = of(events, "step_dispatched")
    assert [d["step_id"] for d in dispatched] == ["S1", "S2", "S3", "S4"]
    assert {d["reason"] for d in dispatched} == {AUTO_REASON}
    assert all(r["dispatched_by"] == "foreman" for r in of(events, "ledger_updated")[:3])
    assert result.status == "success" and result.stop_reason == "satisfied"
    assert of(events, "replanned") == []
    assert sandbox_rows("SELECT amount_usd FROM refunds") == [{"amount_usd": 189.0}]


async def test_discipline_cannot_proceed_without_evidence_does_not_end_the_run(
        settings: Settings, sandbox_rows: Any) -> None:
    prompts_seen: list[str] = []

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role != "manager.progress":
            return None
        prompts_seen.append(prompt_of(req))
        if len(prompts_seen) == 1:
            return ProviderReply(content=json.dumps({
                "is_request_satisfied": {"answer": False, "reason": "nothing done"},
                "is_in_loop": {"answer": False, "reason": ""},
                "is_progress_being_made": {"answer": False, "reason": "no step results"},
                "cannot_proceed": {"answer": True,
                                   "reason": "there are no recent step results"},
                "next_steps": []}))
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(INCIDENT_TASK, "incident")
        events = s.store.events(result.run_id)

    rejected = of(events, "claim_rejected")
    assert rejected[0]["claim"] == "cannot_proceed"
    assert set(rejected[0]["ready_steps"]) == {"S1", "S2"}
    assert "nothing in the record blocks the run" in prompts_seen[1]
    assert result.status == "success" and result.stop_reason == "satisfied"
    assert sandbox_rows("SELECT action FROM remediations WHERE service='checkout-api'") == [
        {"action": "restart"}]


async def test_discipline_phrase_in_depends_on_is_dropped_and_the_step_runs(
        settings: Settings) -> None:
    plan = {"facts": {"given": [WHERE_TASK]}, "plan": [
        {"id": "S1", "agent": "researcher", "goal": "Find order O-5003's shipping status",
         "depends_on": ["order O-5003's shipping status"]}]}

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        return ProviderReply(content=json.dumps(plan)) if req.role == "manager.plan" else None

    settings = with_limits(settings, "support", max_rounds=6)
    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(WHERE_TASK, "support")
        events = s.store.events(result.run_id)

    created = of(events, "plan_created")[0]
    assert created["ledger"]["plan"][0]["depends_on"] == []
    assert created["changes"] == ["step S1: dependency \"order O-5003's shipping status\" "
                                  "dropped (names no step)"]
    assert created["ledger"]["changes"] == created["changes"]
    assert "lookup_order" in tool_order(events)
    assert result.status == "success"


async def test_discipline_final_answer_of_a_run_where_nothing_completed(
        settings: Settings) -> None:
    # Every researcher attempt is blocked; nothing completes, so there is nothing to summarise.
    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "specialist.researcher":
            return ProviderReply(content="I'm sorry, I could not reach the order system.")
        return None

    settings = with_limits(settings, "support", max_rounds=4)
    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(WHERE_TASK, "support")
        events = s.store.events(result.run_id)

    roles = [e["data"]["role"] for e in events if e["type"] == "model_call"]
    assert "manager.final" not in roles  # no model is asked to summarise nothing
    answer = result.final_answer or ""
    assert answer.startswith("Nothing was done: no step of the plan was completed")
    assert "in transit" not in answer and "no shipping status" not in answer
    assert result.status == "error" and result.stop_reason != "satisfied"
    failed = of(events, "run_failed")
    assert failed and failed[0]["stop_reason"] == result.stop_reason
    assert event_types(events)[-1] == "run_failed"


async def test_discipline_claimed_satisfaction_with_open_steps_is_not_accepted(
        settings: Settings, sandbox_rows: Any) -> None:
    calls = {"n": 0}

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "manager.progress" and calls["n"] == 0:
            calls["n"] += 1
            return ProviderReply(content=progress_reply(satisfied=True))
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")
        events = s.store.events(result.run_id)

    rejected = of(events, "claim_rejected")
    assert rejected[0]["claim"] == "is_request_satisfied"
    assert rejected[0]["open_steps"] == ["S1", "S2", "S3", "S4"]
    assert of(events, "verification")[0]["round"] > 1  # the verifier only saw a done plan
    assert result.stop_reason == "satisfied"
    assert sandbox_rows("SELECT COUNT(*) AS n FROM refunds") == [{"n": 1}]


async def test_discipline_final_answer_carries_the_changes_the_record_shows(
        settings: Settings, sandbox_rows: Any) -> None:
    # A small model wrote that the order was refunded when no step had refunded anything:
    # the line under its answer lists the writes the tool record holds, and only those.
    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "manager.final":
            return ProviderReply(content="Order O-5003 was refunded for $129.50.")
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(WHERE_TASK, "support")
        events = s.store.events(result.run_id)
        registry = s.runner.registry

    assert result.status == "success"
    ran = [e["data"]["tool"] for e in events if e["type"] == "tool_result" and e["data"]["ok"]]
    written = [t for t in ran if registry.get(t).side_effect == "write"]
    assert written and len(written) < len(ran)  # the run read as well as wrote
    head, line = (result.final_answer or "").rsplit("\n\n", 1)
    assert head == "Order O-5003 was refunded for $129.50."
    assert line.startswith("Changes made by this run (from its tool record): ")
    assert re.findall(r"(\w+) \(\w+, S\d+\)", line) == written
    assert "issue_refund" not in line


def test_discipline_changes_line_of_a_read_only_and_of_a_shadow_run(
        settings: Settings, tmp_path: Path) -> None:
    team = team_spec(settings, "support", demo_registry(tmp_path / "sandbox.db"))

    def result(agent: str, step: str, *calls: tuple[str, bool]) -> Any:
        return {"agent": agent, "step_id": step, "tools": [
            {"name": n, "ok": ok, "args_sha256": "a", "result_sha256": "r"} for n, ok in calls]}

    looked = [result("researcher", "S1", ("lookup_order", True))]
    assert changes_made(team, looked) == "Changes made by this run (from its tool record): none."
    refunded = [*looked, result("billing", "S2", ("lookup_order", True),
                                ("issue_refund", False), ("issue_refund", True))]
    assert changes_made(team, refunded) == (
        "Changes made by this run (from its tool record): issue_refund (billing, S2).")
    assert changes_made(team, refunded, shadow=True) == (
        "Shadow run, nothing was changed; the calls that would have: issue_refund (billing, S2).")
    assert changes_made(team, looked, shadow=True) == "Shadow run: nothing was changed."
