"""Checkpointer size, pruning of finished threads, and the state kept in delta channels:
whole and exactly once after a resume in a new process, linear in size, compressed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import StateSnapshot

from app.config.settings import Settings
from app.llm.scripted import ScriptedProvider
from app.runs.runner import Runner
from app.services import open_services
from app.storage.checkpoint import CompressingSerializer, prune_finished, sqlite_saver, thread_size
from app.storage.thread_keys import thread_key
from evals.bench.scenario import TASK as BENCH_TASK
from evals.bench.scenario import TEAM, bench_settings, rounds_behaviour
from tests.conftest import ROOT
from tests.fakes import RefundNeedsApproval
from tools import sandbox

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
WHERE = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"


async def test_prune_finished_drops_specialist_checkpoints_and_keeps_the_root_history(
        settings: Settings) -> None:
    # Its own data dir: the same refund again on one sandbox would be (rightly) refused.
    kept = settings.model_copy(update={"prune_checkpoints": False,
                                       "data_dir": settings.data_dir.parent / "kept"})
    async with open_services(kept) as s:
        await s.runner.start(TASK, "support", thread_id="t-full")
        full = await thread_size(s.runner.saver, thread_key("default", "t-full"))
    async with open_services(settings) as services:
        result = await services.runner.start(TASK, "support", thread_id="t-prune")
        size = await thread_size(services.runner.saver, thread_key("default", "t-prune"))
        history = [h async for h in services.runner.graph("support").aget_state_history(
            {"configurable": {"thread_id": thread_key("default", "t-prune")}})]
        snapshot = await services.runner.graph("support").aget_state(
            {"configurable": {"thread_id": thread_key("default", "t-prune")}})

    assert result.status == "success"
    assert full is not None and size is not None
    assert 1 < size.checkpoints < full.checkpoints
    assert size.writes < full.writes
    assert len(history) == size.checkpoints  # every root checkpoint is still there
    assert snapshot.values["final_answer"] == result.final_answer
    assert not snapshot.next


async def test_prune_finished_lets_the_thread_run_again(services: Any) -> None:
    await services.runner.start(TASK, "support", thread_id="t-again")
    second = await services.runner.start(WHERE, "support", thread_id="t-again")

    assert second.status == "success"
    assert "in transit" in (second.final_answer or "")


async def test_prune_checkpoints_off_keeps_the_history(settings: Settings) -> None:
    kept = settings.model_copy(update={"prune_checkpoints": False})
    async with open_services(kept) as s:
        await s.runner.start(TASK, "support", thread_id="t-keep")
        size = await thread_size(s.runner.saver, thread_key("default", "t-keep"))

    assert size is not None and size.checkpoints > 10 and size.bytes > 0


def _specialist_is_complete(messages: list[Any], summary: str) -> None:
    """System, user, then each tool call answered exactly once, then the report call."""
    assert all(isinstance(m, dict) for m in messages)
    assert [m["role"] for m in messages[:2]] == ["system", "user"]
    calls = [c["id"] for m in messages[:-1] if m["role"] == "assistant"
             for c in m.get("tool_calls") or []]
    answers = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert calls and sorted(answers) == sorted(calls) and len(set(answers)) == len(answers)
    assert [m["role"] for m in messages[2:-1]] == ["assistant", "tool"] * len(calls)
    report = messages[-1]
    assert report["role"] == "assistant"
    assert [c["function"]["name"] for c in report["tool_calls"]] == ["report"]
    args = json.loads(report["tool_calls"][0]["function"]["arguments"])
    assert args["status"] == "done" and summary.startswith(args["summary"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_state_is_whole_and_exactly_once_after_an_approval_resumed_in_a_new_process(
        settings: Settings, sandbox_rows: Any, request: pytest.FixtureRequest,
        backend: str) -> None:
    update: dict[str, Any] = {"prune_checkpoints": False}
    if backend == "postgres":
        update["database_url"] = request.getfixturevalue("pg_url")
    kept = settings.model_copy(update=update)
    async with open_services(kept, gate=RefundNeedsApproval()) as first:
        paused = await first.runner.start(TASK, "support")
    assert paused.status == "interrupted"

    # Everything below runs on new services: a new saver, store and compiled graph, as a
    # restarted process would.
    async with open_services(kept, gate=RefundNeedsApproval()) as second:
        graph = second.runner.graph("support")
        config = second.runner.config(paused.thread_id, "support")
        waiting = await graph.aget_state(config, subgraphs=True)
        (task,) = [t for t in waiting.tasks if t.interrupts]
        assert isinstance(task.state, StateSnapshot)
        before = task.state.values["messages"]
        assert [m["role"] for m in before] == ["system", "user"] + ["assistant", "tool"] * (
            (len(before) - 3) // 2) + ["assistant"]
        assert before[-1]["tool_calls"][0]["function"]["name"] == "issue_refund"
        assert task.state.values["brief"] == ""  # it lives in the system message now
        assert "Given: [" in before[0]["content"]
        assert [(r["step_id"], r["agent"]) for r in waiting.values["results"]] == [
            ("S1", "researcher")]

        (pending,) = paused.interrupts
        done = await second.runner.resume(paused.thread_id, {pending.id: [{"type": "accept"}]})
        final = (await graph.aget_state(config)).values
        namespace = task.state.config["configurable"]["checkpoint_ns"]
        billing = (await graph.aget_state({"configurable": {
            "thread_id": paused.thread_id, "checkpoint_ns": namespace}})).values
        events = second.store.events(done.run_id)

    assert done.status == "success" and done.stop_reason == "satisfied"
    box = sandbox.connect(kept.database_url or kept.data_dir / "sandbox.db")
    try:
        assert [tuple(r) for r in box.execute("SELECT amount_usd FROM refunds")] == [(189.0,)]
    finally:
        box.close()
    finished = [(e["data"]["step_id"], e["data"]["agent"]) for e in events
                if e["type"] == "agent_finished"]
    results = [(r["step_id"], r["agent"]) for r in final["results"]]
    assert sorted(results) == sorted(finished) and len(set(results)) == len(results)
    assert {s for s, _ in results} == {s["id"] for s in final["ledger"]["plan"]}
    facts = [(f["step_id"], f["agent"], f["text"]) for f in final["established"]]
    assert facts == [(r["step_id"], r["agent"], r["summary"])
                     for r in final["results"] if r["ok"]]
    refund = next(r for r in final["results"] if r["agent"] == "billing")
    assert [t["name"] for t in refund["tools"]].count("issue_refund") == 1
    _specialist_is_complete(billing["messages"], refund["summary"])
    assert billing["messages"][:len(before)] == before


async def test_pruning_leaves_the_root_state_whole(settings: Settings) -> None:
    """Six steps fanned out three at a time: several results per superstep, every specialist
    namespace pruned, and the state read back by new services is what it was."""
    behaviour = rounds_behaviour(6, ["researcher", "billing"], chained=False)
    team = settings.teams["support"]
    wide = team.model_copy(update={"limits": team.limits.model_copy(update={
        "max_parallel": 3})})
    kept = settings.model_copy(update={"prune_checkpoints": False,
                                       "teams": {**settings.teams, "support": wide}})
    async with open_services(kept, scripted=ScriptedProvider(behaviour)) as s:
        result = await s.runner.start(TASK, "support", thread_id="t-fan")
        config = s.runner.config(result.thread_id, "support")
        before = [h.values async for h in s.runner.graph("support").aget_state_history(config)]
        full = await thread_size(s.runner.saver, thread_key("default", "t-fan"))
        await prune_finished(s.runner.saver, result.thread_id)
        pruned = await thread_size(s.runner.saver, thread_key("default", "t-fan"))
    async with open_services(kept, scripted=ScriptedProvider(behaviour)) as s:
        history = [h.values async for h in s.runner.graph("support").aget_state_history(config)]
        after = (await s.runner.graph("support").aget_state(config)).values

    assert result.status == "success" and result.stop_reason == "satisfied"
    assert full is not None and pruned is not None and pruned.bytes < full.bytes
    # Every root checkpoint, not only the last one (which holds the lists whole), reads
    # back as it did before the specialist namespaces were deleted.
    assert history == before and after == before[0]
    grown = [len(v.get("results", [])) for v in reversed(history)]
    assert grown == sorted(grown) and grown[-1] == 6
    assert sorted(r["step_id"] for r in after["results"]) == sorted(f"S{i}" for i in range(1, 7))
    assert [r["round"] for r in after["results"]] == sorted(r["round"] for r in after["results"])
    assert [f["step_id"] for f in after["established"]] == [
        r["step_id"] for r in after["results"]]
    assert len(after["ledger"]["plan"]) == 6


async def test_checkpoint_bytes_grow_linearly_with_rounds(tmp_path: Path) -> None:
    """The bytes a run adds per manager round stay flat as runs get longer (figure 5)."""
    settings = bench_settings(ROOT / "foreman.yaml", tmp_path / "data", max_rounds=20)
    settings = settings.model_copy(update={"prune_checkpoints": False})
    agents = [a.name for a in settings.teams[TEAM].agents]
    behaviour: list[Any] = [None]
    size: dict[int, int] = {}
    async with open_services(settings, scripted=ScriptedProvider(
            lambda request: behaviour[0](request))) as s:
        for rounds in (4, 8, 16):
            behaviour[0] = rounds_behaviour(rounds, agents)
            result = await s.runner.start(BENCH_TASK, TEAM)
            assert result.stop_reason == "satisfied"
            written = await thread_size(s.runner.saver, result.thread_id)
            assert written is not None
            size[rounds] = written.bytes

    early, late = (size[8] - size[4]) / 4, (size[16] - size[8]) / 8
    assert late <= 1.15 * early  # quadratic storage would add ever more per round
    # Each bench step makes one read tool call before it reports (a step is done only on a
    # successful call): its gate, act and report checkpoints are part of the round.
    assert late <= 12 * 1024


def test_compressing_serializer_round_trips_and_reads_uncompressed_payloads() -> None:
    serde = CompressingSerializer()
    big = {"results": [{"step_id": f"S{i}", "summary": "nothing unusual found " * 4}
                       for i in range(40)]}
    typ, blob = serde.dumps_typed(big)
    plain = JsonPlusSerializer().dumps_typed(big)

    assert typ == "msgpack+zlib" and len(blob) < len(plain[1]) // 4
    assert serde.loads_typed((typ, blob)) == big
    assert serde.loads_typed(plain) == big  # written before compression
    assert serde.dumps_typed({"round": 3}) == JsonPlusSerializer().dumps_typed({"round": 3})
    assert serde.loads_typed(serde.dumps_typed(None)) is None
    strict = serde.with_msgpack_allowlist([("graphs.state", "StepResult")])
    assert isinstance(strict, CompressingSerializer)
    assert strict.dumps_typed(big)[0] == "msgpack+zlib"


async def test_a_thread_checkpointed_uncompressed_resumes_on_the_compressing_saver(
        settings: Settings, sandbox_rows: Any) -> None:
    async with open_services(settings, gate=RefundNeedsApproval()) as s, \
            sqlite_saver(settings.data_dir / "checkpoints.db", compress=False) as plain:
        r = s.runner
        old = Runner(settings, s.store, plain, r.router, r.gate, r.registry,
                     knowledge=r.knowledge)
        paused = await old.start(TASK, "support")
        (pending,) = paused.interrupts
        done = await s.runner.resume(paused.thread_id, {pending.id: [{"type": "accept"}]})
        values = (await s.runner.graph("support").aget_state(
            s.runner.config(paused.thread_id, "support"))).values

    assert paused.status == "interrupted"
    assert done.status == "success" and done.stop_reason == "satisfied"
    assert sandbox_rows("SELECT amount_usd FROM refunds") == [{"amount_usd": 189.0}]
    assert [r["step_id"] for r in values["results"]] == ["S1", "S2", "S3", "S4"]


async def _namespaces(saver: Any, thread_id: str) -> Counter[str]:
    """Checkpoints per namespace ("" the root, ``delegate:<task>`` one specialist step)."""
    async with saver.lock, saver.conn.execute(
            "SELECT checkpoint_ns FROM checkpoints WHERE thread_id = ?", (thread_id,)) as cur:
        return Counter(str(ns) for (ns,) in await cur.fetchall())


async def test_a_step_saves_its_own_supersteps_only_where_it_pauses(
        settings: Settings, sandbox_rows: Any) -> None:
    """By default a specialist's step writes no checkpoint of its own unless it pauses: the
    researcher's step that ran through left none, the billing step left its pause, and a new
    process resumes it from there (its first model call is not asked again)."""
    async with open_services(settings, gate=RefundNeedsApproval()) as first:
        paused = await first.runner.start(TASK, "support")
        spaces = await _namespaces(first.runner.saver, paused.thread_id)
        before = first.store.events(paused.run_id)
        asked = [e["data"]["call_key"] for e in before if e["type"] == "model_call"]
    assert paused.status == "interrupted"
    steps = [ns for ns in spaces if ns.startswith("delegate:")]
    assert len(steps) == 1 and spaces[""] > 1  # the billing step's pause, the root's history
    async with open_services(settings.model_copy(update={
            "prune_checkpoints": False, "data_dir": settings.data_dir.parent / "kept"}),
            gate=RefundNeedsApproval()) as kept:
        also = await kept.runner.start(TASK, "support")
        every = await _namespaces(kept.runner.saver, also.thread_id)
    # Keeping the history saves both steps' supersteps, the researcher's included.
    assert len([ns for ns in every if ns.startswith("delegate:")]) == 2
    assert sum(every.values()) > sum(spaces.values())

    async with open_services(settings, gate=RefundNeedsApproval()) as second:
        (pending,) = paused.interrupts
        done = await second.runner.resume(paused.thread_id, {pending.id: [{"type": "accept"}]})
        after = second.store.events(done.run_id, after=before[-1]["seq"])
        again = [e["data"]["call_key"] for e in after if e["type"] == "model_call"]
        final = (await second.runner.graph("support").aget_state(
            second.runner.config(paused.thread_id, "support"))).values

    assert done.status == "success" and done.stop_reason == "satisfied"
    assert again and not set(asked) & set(again)  # nothing asked before the pause again
    box = sandbox.connect(settings.data_dir / "sandbox.db")
    try:
        assert [tuple(r) for r in box.execute("SELECT amount_usd FROM refunds")] == [(189.0,)]
    finally:
        box.close()
    refund = next(r for r in final["results"] if r["agent"] == "billing")
    called = [e["data"]["tool"] for e in before + after if e["type"] == "tool_called"
              and e["data"]["agent"] == "billing"]
    assert [t["name"] for t in refund["tools"]] == called == ["issue_refund"]
    assert refund["ok"] and "189" in refund["summary"]
