"""The manager loop through the real graph, tools and sandbox, with scripted models."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from app.config.settings import Settings
from app.llm.provider import ProviderReply
from app.llm.scripted import ScriptedProvider
from app.services import open_services
from graphs.ports import ModelRequest
from graphs.views import parse_result_lines, parse_status_lines
from tests.fakes import event_types, progress_reply

REFUND_TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


def with_limits(settings: Settings, team: str, **limits: Any) -> Settings:
    teams = dict(settings.teams)
    cfg = teams[team]
    teams[team] = cfg.model_copy(update={"limits": cfg.limits.model_copy(update=limits)})
    return settings.model_copy(update={"teams": teams})


async def test_manager_plan_is_recorded_with_owners_and_dependencies(services: Any) -> None:
    result = await services.runner.start(REFUND_TASK, "support")

    events = services.store.events(result.run_id)
    plan = next(e["data"]["ledger"] for e in events if e["type"] == "plan_created")
    assert [s["agent"] for s in plan["plan"]] == ["researcher", "billing", "communications",
                                                 "ticketing"]
    assert plan["plan"][1]["depends_on"] == ["S1"]
    assert plan["facts"]["given"] and plan["facts"]["to_look_up"]


async def test_manager_progress_emits_one_ledger_per_round_until_verified(services: Any) -> None:
    result = await services.runner.start(REFUND_TASK, "support")

    events = services.store.events(result.run_id)
    rounds = [e["data"] for e in events if e["type"] == "ledger_updated"]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    assert rounds[-1]["progress"]["is_request_satisfied"]["answer"] is True
    types = event_types(events)
    assert types.index("verification") > types.index("ledger_updated")
    assert types[-1] == "run_completed"
    roles = [e["data"]["role"] for e in events if e["type"] == "model_call"]
    assert roles[0] == "manager.plan" and roles[-1] == "manager.final"
    assert "manager.verify" in roles


async def test_manager_fans_out_independent_steps_concurrently(settings: Settings,
                                                               sandbox_rows: Any) -> None:
    # S3 (communications) and S4 (ticketing) both depend only on S2. Each one's first model
    # call waits at a two-party barrier: the run can only finish if they run at once.
    barrier = asyncio.Barrier(2)
    waited: list[str] = []

    class BarrierProvider(ScriptedProvider):
        async def complete(self, model: Any, request: ModelRequest) -> ProviderReply:
            if request.role in {"specialist.communications", "specialist.ticketing"} and \
                    request.call_key.endswith("/s0"):
                await asyncio.wait_for(barrier.wait(), timeout=5)
                waited.append(request.role)
            return await super().complete(model, request)

    async with open_services(settings, scripted=BarrierProvider()) as s:
        result = await s.runner.start(REFUND_TASK, "support")

    assert result.status == "success"
    assert sorted(waited) == ["specialist.communications", "specialist.ticketing"]
    assert sandbox_rows("SELECT status FROM tickets WHERE id='T-9001'") == [{"status": "closed"}]


async def test_manager_stall_triggers_replan_with_evidence(settings: Settings,
                                                           sandbox_rows: Any) -> None:
    stalls = {"n": 0}
    replan_prompts: list[str] = []

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "manager.progress" and stalls["n"] < 3:
            stalls["n"] += 1
            return ProviderReply(content=progress_reply(progress=False))
        if req.role == "manager.plan" and "not working" in str(req.messages[-1]["content"]):
            replan_prompts.append(str(req.messages[-1]["content"]))
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")
        events = s.store.events(result.run_id)

    replans = [e["data"] for e in events if e["type"] == "replanned"]
    assert len(replans) == 1
    assert [p for p in replans[0]["problems"] if "stalled" in p] == [
        "round 1: stalled (test)", "round 2: stalled (test)", "round 3: stalled (test)"]
    assert "round 3: stalled (test)" in replan_prompts[0]
    assert result.stop_reason == "satisfied"
    assert sandbox_rows("SELECT COUNT(*) AS n FROM refunds") == [{"n": 1}]


async def test_manager_repairs_malformed_ledger_json(settings: Settings) -> None:
    sent = {"plan": 0}

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "manager.plan" and sent["plan"] == 0:
            sent["plan"] += 1
            # Fenced, single-quoted, trailing comma: repairable without another call.
            return ProviderReply(content="Here you go:\n```json\n{'facts': {'given': ['x'],},"
                                 " 'plan': [{'id': 'S1', 'agent': 'researcher', 'goal': "
                                 "'look', 'depends_on': [],},],}\n```")
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start("Check customer C-1001's account", "support")
        events = s.store.events(result.run_id)

    plan = next(e["data"] for e in events if e["type"] == "plan_created")
    assert plan["ledger"]["plan"][0] == {"id": "S1", "agent": "researcher", "goal": "look",
                                         "depends_on": []}
    assert [e["data"]["role"] for e in events if e["type"] == "model_call"].count(
        "manager.plan") == 1
    # An offline model cannot do this task: its step reports blocked and the run says so.
    assert result.status == "error" and result.stop_reason == "blocked"


async def test_manager_retries_invalid_ledger_once_then_uses_it(settings: Settings) -> None:
    answers = iter(['{"facts": {}, "plan": []}'])

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "manager.plan":
            return ProviderReply(content=next(answers, None)) if req.call_key.endswith(
                "/a0") else None
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")
        events = s.store.events(result.run_id)

    plan_calls = [e["data"] for e in events
                  if e["type"] == "model_call" and e["data"]["role"] == "manager.plan"]
    assert len(plan_calls) == 2
    created = next(e["data"] for e in events if e["type"] == "plan_created")
    assert any("repaired on retry" in n for n in created["notes"])
    assert len(created["ledger"]["plan"]) == 4
    assert result.stop_reason == "satisfied"


async def test_manager_survives_unknown_and_misspelt_agents(settings: Settings,
                                                            sandbox_rows: Any) -> None:
    rounds = {"n": 0}

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role != "manager.progress":
            return None
        rounds["n"] += 1
        if rounds["n"] == 1:
            return ProviderReply(content=progress_reply(steps=[
                {"step_id": "S1", "agent": "legal_team", "instruction": "Sue them"}]))
        if rounds["n"] == 2:
            return ProviderReply(content=progress_reply(steps=[
                {"step_id": "S1", "agent": "Researcher ", "instruction":
                 "Look up customer C-1001, order O-5002 (amount, prior refunds) and "
                 "C-1001's open tickets."}]))
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")
        events = s.store.events(result.run_id)

    ledgers = [e["data"] for e in events if e["type"] == "ledger_updated"]
    assert any("unknown agent 'legal_team'" in n for n in ledgers[0]["notes"])
    # Nothing the model named could run while S1 was ready: Foreman ran S1, not a stall.
    assert ledgers[0]["dispatched_by"] == "foreman"
    assert [s["step_id"] for s in ledgers[0]["next_steps"]] == ["S1"]
    assert ledgers[0]["stall_count"] == 0
    assert ledgers[1]["next_steps"][0]["agent"] == "researcher"
    assert result.status == "success" and result.stop_reason == "satisfied"
    assert sandbox_rows("SELECT COUNT(*) AS n FROM refunds") == [{"n": 1}]


async def test_manager_round_limit_still_synthesises_final_answer(settings: Settings) -> None:
    settings = with_limits(settings, "support", max_rounds=3, max_stalls=50)
    final_prompts: list[str] = []

    rounds = {"n": 0}

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "manager.progress":
            rounds["n"] += 1
            # Round 1 does S1 for real; after that the manager keeps asking for nothing useful.
            return None if rounds["n"] == 1 else ProviderReply(content=progress_reply(steps=[
                {"step_id": "S1", "agent": "researcher", "instruction": "Look again"}]))
        if req.role == "manager.final":
            final_prompts.append(str(req.messages[-1]["content"]))
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")
        events = s.store.events(result.run_id)

    # The run did not do its task: a status a client tells from success, and run_failed.
    assert result.status == "error"
    assert result.stop_reason == "round_limit"
    assert event_types(events)[-1] == "run_failed"
    assert "How the run ended: round_limit" in final_prompts[0]
    assert "stopped before finishing (round_limit)" in (result.final_answer or "")
    assert len([e for e in events if e["type"] == "ledger_updated"]) == 3


async def test_manager_loop_detection_counts_repeated_identical_steps(settings: Settings) -> None:
    settings = with_limits(settings, "support", max_rounds=6, max_stalls=2, max_replans=0)

    def behaviour(req: ModelRequest) -> ProviderReply | None:
        if req.role == "manager.progress":
            return ProviderReply(content=progress_reply(steps=[
                {"step_id": "S1", "agent": "researcher", "instruction":
                 "Look up customer C-1001, order O-5002 (amount, prior refunds) and "
                 "C-1001's open tickets."}]))
        return None

    async with open_services(settings, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(REFUND_TASK, "support")
        events = s.store.events(result.run_id)

    ledgers = [e["data"] for e in events if e["type"] == "ledger_updated"]
    assert ledgers[0]["loop_detected"] is False
    assert any(ledger["loop_detected"] for ledger in ledgers[1:])
    assert result.stop_reason == "stalled"


def test_manager_prompt_stays_flat_as_results_accumulate() -> None:
    from graphs.views import recent_results

    results = [{"round": i, "step_id": f"S{i}", "agent": "researcher", "instruction": "x",
                "summary": "y" * 2000, "ok": True, "tools": [], "fingerprint": str(i)}
               for i in range(40)]
    view5, _ = recent_results(results[:5], 6, 600)  # type: ignore[arg-type]
    view40, omitted = recent_results(results, 6, 600)  # type: ignore[arg-type]
    assert omitted == 34
    assert len(json.dumps(view40)) <= len(json.dumps(view5)) * 1.3


def _result(rnd: int, step: str, status: str = "done") -> dict[str, Any]:
    return {"round": rnd, "step_id": step, "agent": "researcher", "instruction": f"area {rnd}",
            "summary": f"report {rnd} on {step}", "ok": status == "done", "status": status,
            "tools": [], "fingerprint": str(rnd)}


def test_a_specialists_brief_keeps_only_the_latest_report_of_each_step() -> None:
    from graphs.views import brief

    ledger = {"facts": {"given": ["the task"], "to_look_up": [], "to_derive": [],
                        "guesses": []}, "plan": []}
    results = [_result(1, "S1"), _result(2, "S2"), _result(3, "S1"), _result(4, "S3"),
               _result(5, "S1")]
    shown = brief(ledger, results, 6, 600)  # type: ignore[arg-type]
    assert shown.splitlines()[0] == 'Given: ["the task"]'
    assert [(r["step_id"], r["round"], r["summary"]) for r in parse_result_lines(shown)] == [
        ("S2", 2, "report 2 on S2"), ("S3", 4, "report 4 on S3"), ("S1", 5, "report 5 on S1")]
    # keep bounds the steps shown, newest first to stay
    two = brief(ledger, results, 2, 600)  # type: ignore[arg-type]
    assert [r["step_id"] for r in parse_result_lines(two)] == ["S3", "S1"]
    assert brief(ledger, [], 6, 600) == 'Given: ["the task"]'  # type: ignore[arg-type]


def test_the_progress_prompt_shows_the_plan_once_and_the_drop_rules_only_on_trouble() -> None:
    import prompts
    from graphs.manager_common import Manager
    from graphs.team import AgentSpec, TeamSpec

    m = Manager.of(TeamSpec(name="support", description="", agents=tuple(
        AgentSpec(name=n, description=f"the {n}", instructions="", tools=())
        for n in ("researcher", "billing"))))
    plan = [{"id": "S1", "agent": "researcher", "goal": "Find the order", "depends_on": []},
            {"id": "S2", "agent": "billing", "goal": "Refund it", "depends_on": ["S1"]}]
    ledger = {"facts": {"given": ["refund O-5002"], "to_look_up": [], "to_derive": [],
                        "guesses": []}, "plan": plan}

    def rendered(results: list[dict[str, Any]]) -> str:
        state = {"task": "refund O-5002", "ledger": ledger, "results": results}
        return str(prompts.render("progress.j2", round=2, max_rounds=9, notes=[],
                                  agent_names=m.names, **m.views(state)))  # type: ignore[arg-type]

    calm = rendered([_result(1, "S1")])
    assert calm.count("Find the order") == 1  # in the plan status, not in the ledger too
    assert calm.count("refund O-5002") == 1  # the task, not repeated as a given fact
    status = parse_status_lines(calm.split("<plan_status>")[1].split("</plan_status>")[0])
    assert [(s["id"], s["state"], s["depends_on"]) for s in status] == [
        ("S1", "done", []), ("S2", "not started", ["S1"])]
    assert "- S2 (billing, not started, after S1): \"Refund it\"" in calm
    assert "drop_steps" not in calm and "cannot_proceed" not in calm
    assert "only when the record shows" not in calm

    troubled = " ".join(rendered([_result(1, "S1"), _result(2, "S2", "blocked")]).split())
    assert "only when the record shows it cannot" in troubled
    assert "Set cannot_proceed to true only when" in troubled
    assert '"drop_steps": []' in troubled and '"cannot_proceed": {"answer"' in troubled
