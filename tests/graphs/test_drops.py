"""A plan step may be dropped only on evidence the run holds."""

from __future__ import annotations

import json
from typing import Any

from app.config.settings import Settings
from app.llm.provider import ProviderReply
from app.llm.scripted import ScriptedProvider
from app.services import open_services
from graphs.drops import apply_drops, drop_evidence
from graphs.ledger import DropOut, NextStepOut, ProgressLedgerOut
from graphs.ports import ModelRequest
from graphs.state import PlanStep, StepResult, TaskLedger, ToolTrace
from graphs.verdicts import decide

WHERE_TASK = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"
PLAN = [PlanStep(id="S1", agent="researcher", goal="Look up order O-5003's shipping status",
                 depends_on=[]),
        PlanStep(id="S2", agent="communications", goal="Email customer C-1002 the status",
                 depends_on=["S1"])]


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == kind]


def result(step: str, rnd: int, status: str, tools: list[ToolTrace] | None = None) -> StepResult:
    return StepResult(round=rnd, step_id=step, agent="researcher", instruction="", summary="",
                      ok=status == "done", tools=tools or [], fingerprint=f"{step}{rnd}",
                      status=status)


def progress(**fields: Any) -> ProgressLedgerOut:
    base = {"is_request_satisfied": {"answer": False}, "is_in_loop": {"answer": False},
            "is_progress_being_made": {"answer": True}}
    return ProgressLedgerOut.model_validate({**base, **fields})


def test_drops_evidence_the_record_can_hold() -> None:
    s1, s2 = PLAN
    assert drop_evidence(s1, PLAN, []) == ""
    assert drop_evidence(s1, PLAN, [result("S1", 1, "unclear")]) == ""  # one unclear try
    assert drop_evidence(s1, PLAN, [result("S1", 1, "unclear"), result("S1", 2, "unclear")]
                         ) == "2 attempts ended without it done"
    assert drop_evidence(s1, PLAN, [result("S1", 1, "blocked")]).startswith(
        "researcher reported it blocked")
    denied = ToolTrace(name="lookup_order", args_sha256="", ok=False, result_sha256="",
                       refused="denied")
    assert drop_evidence(s1, PLAN, [result("S1", 1, "unclear", [denied])]) == (
        "lookup_order was denied in round 1")
    assert drop_evidence(s1, PLAN, [result("S1", 1, "done")]) == "it is done already"
    gone = [PlanStep(**{**s1, "dropped": "x", "drop_evidence": "y"}), s2]
    assert drop_evidence(s2, gone, []) == "it depends on dropped step S1"
    # A step added in its place covers it; one waiting on it does not.
    added = PlanStep(id="S3", agent="researcher", goal="Look up order O-5003 shipping status",
                     depends_on=[])
    assert drop_evidence(s1, [*PLAN, added], []) == "step S3 covers its goal"
    waiting = PlanStep(**{**added, "depends_on": ["S1"]})
    assert drop_evidence(s1, [*PLAN, waiting], []) == ""
    # Or a step named in its place in the same progress ledger; not one of another agent,
    # nor a goal that only shares a word or two ("the ticket").
    instead = NextStepOut(agent="researcher", instruction="Look up order O-5003 shipping status")
    assert drop_evidence(s1, PLAN, [], [instead]).startswith("the next step named in its place")
    other = NextStepOut(agent="communications", instruction=instead.instruction)
    assert drop_evidence(s1, PLAN, [], [other]) == ""
    close = PlanStep(id="S3", agent="researcher", goal="Close the status ticket", depends_on=[])
    assert drop_evidence(s1, [*PLAN, close], []) == ""


def test_drops_refused_without_evidence_keep_the_step_open() -> None:
    out = apply_drops(PLAN, [DropOut(step_id="S1", reason="not looked up yet")], [])
    assert out.plan == PLAN
    assert out.events[0][0] == "claim_rejected"
    assert out.events[0][1]["claim"] == "drop_steps" and out.events[0][1]["step_id"] == "S1"
    assert "drop of step S1 refused (not looked up yet)" in out.notes[0]


def test_drops_a_step_dropped_without_evidence_keeps_a_run_from_satisfied() -> None:
    # However a drop without evidence got into the ledger, it does not settle the step.
    ledger = TaskLedger(facts={"given": [], "to_look_up": [], "to_derive": [], "guesses": []},
                        plan=[PlanStep(**{**PLAN[0], "dropped": "no reason"}), PLAN[1]])
    results = [StepResult(**{**result("S2", 1, "done"), "agent": "communications"})]
    claimed = decide(progress(is_request_satisfied={"answer": True}), ledger, results,
                     since=0, agents=["researcher", "communications"], task=WHERE_TASK,
                     limit=4, looping=False)
    assert not claimed.satisfied
    kind, data = claimed.events[0]
    assert kind == "claim_rejected" and data["open_steps"] == ["S1"]
    backed = PlanStep(**{**PLAN[0], "dropped": "blocked", "drop_evidence": "it was blocked"})
    settled = decide(progress(is_request_satisfied={"answer": True}),
                     TaskLedger(facts=ledger["facts"], plan=[backed, PLAN[1]]), results,
                     since=0, agents=["researcher", "communications"], task=WHERE_TASK,
                     limit=4, looping=False)
    assert settled.satisfied


async def test_drops_manager_dropping_the_lookup_without_evidence_is_refused(
        settings: Settings) -> None:
    # The case a real small model produced: in round 1 the manager dropped S1 (the lookup),
    # with no attempt of it on record, and the run went on to "success" without it.
    prompts_seen: list[str] = []

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role != "manager.progress":
            return None
        prompts_seen.append(str(req.messages[-1]["content"]))
        if len(prompts_seen) == 1:
            return ProviderReply(content=json.dumps({
                "is_request_satisfied": {"answer": False, "reason": "not looked up yet"},
                "is_in_loop": {"answer": False, "reason": ""},
                "is_progress_being_made": {"answer": True, "reason": ""},
                "next_steps": [],
                "drop_steps": [{"step_id": "S1", "reason": "not looked up yet"}]}))
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(WHERE_TASK, "support")
        events = s.store.events(result.run_id)

    rejected = [r for r in of(events, "claim_rejected") if r["claim"] == "drop_steps"]
    assert rejected and rejected[0]["step_id"] == "S1"
    assert of(events, "step_dropped") == []
    assert "drop of step S1 refused" in prompts_seen[1]
    s1 = [f for f in of(events, "agent_finished") if f["step_id"] == "S1"]
    assert s1 and s1[0]["status"] == "done"
    assert "lookup_order" in [c["tool"] for c in of(events, "tool_called")]
    assert result.status == "success"


async def test_drops_a_blocked_step_may_be_dropped(settings: Settings) -> None:
    blocked = {"n": 0}
    dropped: list[bool] = []

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "specialist.researcher" and blocked["n"] == 0:
            blocked["n"] += 1
            return ProviderReply(content="BLOCKED: the order system is unreachable.")
        if req.role == "manager.progress" and blocked["n"] and not dropped:
            dropped.append(True)
            return ProviderReply(content=json.dumps({
                "is_request_satisfied": {"answer": False, "reason": ""},
                "is_in_loop": {"answer": False, "reason": ""},
                "is_progress_being_made": {"answer": False, "reason": ""},
                "drop_steps": [{"step_id": "S1", "reason": "order system down"}]}))
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(WHERE_TASK, "support")
        events = s.store.events(result.run_id)

    (drop,) = of(events, "step_dropped")
    assert drop["step_id"] == "S1" and drop["reason"] == "order system down"
    assert drop["evidence"].startswith("researcher reported it blocked in round 1")
    assert not [r for r in of(events, "claim_rejected") if r["claim"] == "drop_steps"]
