"""Plan review: approve, revise with feedback (replan, review again), edit, reject."""

from __future__ import annotations

from typing import Any

from app.config.settings import Settings
from app.services import open_services

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


def reviewing(settings: Settings) -> Settings:
    teams = dict(settings.teams)
    teams["support"] = teams["support"].model_copy(update={"plan_review": True})
    return settings.model_copy(update={"teams": teams})


async def test_plan_review_pauses_before_any_agent_and_approve_continues(
        settings: Settings, sandbox_rows: Any) -> None:
    async with open_services(reviewing(settings)) as s:
        paused = await s.runner.start(TASK, "support")
        assert paused.status == "interrupted"
        (pending,) = paused.interrupts
        assert pending.value["kind"] == "plan"
        assert len(pending.value["action_request"]["args"]["ledger"]["plan"]) == 4
        events = s.store.events(paused.run_id)
        assert not any(e["type"] == "agent_started" for e in events)
        done = await s.runner.resume(paused.thread_id, {pending.id: [{"type": "accept"}]})

    assert done.status == "success" and done.stop_reason == "satisfied"
    assert sandbox_rows("SELECT COUNT(*) AS n FROM refunds") == [{"n": 1}]


async def test_plan_review_feedback_replans_and_asks_again(settings: Settings) -> None:
    async with open_services(reviewing(settings)) as s:
        paused = await s.runner.start(TASK, "support")
        (first,) = paused.interrupts
        again = await s.runner.resume(paused.thread_id, {first.id: {
            "decision": "respond", "message": "check the warranty before refunding"}})
        assert again.status == "interrupted"
        (second,) = again.interrupts
        assert second.value["kind"] == "plan"
        assert second.value["approval_id"] != first.value["approval_id"]
        events = s.store.events(paused.run_id)
        replanned = [e["data"] for e in events if e["type"] == "replanned"]
        assert "check the warranty before refunding" in replanned[0]["problems"][0]
        done = await s.runner.resume(paused.thread_id, {second.id: {"decision": "approve"}})

    assert done.status == "success"


async def test_plan_review_edit_runs_the_edited_plan(settings: Settings,
                                                    sandbox_rows: Any) -> None:
    async with open_services(reviewing(settings)) as s:
        paused = await s.runner.start(TASK, "support")
        (pending,) = paused.interrupts
        ledger = pending.value["action_request"]["args"]["ledger"]
        ledger["plan"] = [step for step in ledger["plan"] if step["agent"] != "communications"]
        done = await s.runner.resume(paused.thread_id, {pending.id: {
            "decision": "edit", "args": {"ledger": ledger}}})

    assert done.status == "success" and done.stop_reason == "satisfied"
    assert sandbox_rows("SELECT COUNT(*) AS n FROM outbox") == [{"n": 0}]
    assert sandbox_rows("SELECT COUNT(*) AS n FROM refunds") == [{"n": 1}]


async def test_plan_review_reject_ends_the_run_without_side_effects(
        settings: Settings, sandbox_rows: Any) -> None:
    async with open_services(reviewing(settings)) as s:
        paused = await s.runner.start(TASK, "support")
        (pending,) = paused.interrupts
        done = await s.runner.resume(paused.thread_id, {pending.id: {"decision": "reject"}})

    assert done.status == "error" and done.stop_reason == "plan_rejected"
    assert sandbox_rows("SELECT COUNT(*) AS n FROM refunds") == [{"n": 0}]
