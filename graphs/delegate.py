"""One delegation: a plan step run by its specialist, and what the manager keeps of it
(the step result, and the fact it established, with provenance, in the thread's memory)."""

from __future__ import annotations

from typing import Any, Protocol

from langgraph.config import get_config
from langgraph.runtime import Runtime

from graphs.ports import MemoryNote, RunContext, Trust
from graphs.specialist import build_specialist, thread_of
from graphs.state import DelegateInput, Fact, StepResult
from graphs.team import TeamSpec
from graphs.views import fingerprint


class Delegate(Protocol):
    """The ``delegate`` node's signature (a ``Send`` payload in, the step's result out)."""

    async def __call__(self, payload: DelegateInput, *,
                       runtime: Runtime[RunContext]) -> dict[str, Any]: ...


def fact_of(team: TeamSpec, result: StepResult) -> Fact:
    """The step's report as a fact with provenance; untrusted when it read document text."""
    agent = team.agent(result["agent"])
    used = [t for t in result["tools"] if t["ok"]]
    untrusted = any((spec := agent.tool(t["name"]) if agent else None) is None
                    or spec.untrusted_output for t in used)
    return Fact(text=result["summary"], agent=result["agent"], step_id=result["step_id"],
                round=result["round"], trust=(Trust.UNTRUSTED if untrusted else Trust.AGENT).value,
                tools=[f"{t['name']}@{t['result_sha256'][:12]}" for t in used])


def build_delegate(team: TeamSpec) -> Delegate:
    """The manager's ``delegate`` node for ``team``: runs the specialist subgraph."""
    limits = team.limits
    specialist = build_specialist(team).compile()

    async def delegate(payload: DelegateInput, runtime: Runtime[RunContext]) -> dict[str, Any]:
        runtime.context.events.emit("agent_started", {
            "agent": payload["agent"], "step_id": payload["step_id"],
            "instruction": payload["instruction"], "round": payload["round"],
            "about": payload.get("about", [])})
        # Unless asked to keep them, the step's own supersteps are saved only when it pauses
        # (an approval) or fails: a step that runs through leaves its result in the
        # manager's checkpoint and nothing of its own. A step cut short by a crash runs
        # again from its start (or its pause) with its model calls replayed from the journal
        # and its tool calls reconciled from the ledger, so nothing is paid or done twice.
        out = await specialist.ainvoke(
            {**payload, "messages": [], "steps": 0, "queue": [], "cleared": None,
             "tools_used": []},
            {**get_config(), "recursion_limit": limits.specialist_max_steps * 12 + 10},
            durability=None if runtime.context.keep_step_history else "exit")
        result = StepResult(
            round=payload["round"], step_id=payload["step_id"], agent=payload["agent"],
            instruction=payload["instruction"], summary=out["summary"], ok=out["ok"],
            tools=out.get("tools_used", []), status=out.get("status") or (
                "done" if out["ok"] else "blocked"), report=out.get("report") or {},
            fingerprint=fingerprint(payload["agent"], payload["instruction"],
                                    out.get("tools_used", [])))
        runtime.context.events.emit("agent_finished", {
            "agent": payload["agent"], "step_id": payload["step_id"], "ok": out["ok"],
            "status": result.get("status"), "summary": out["summary"][: limits.summary_chars]})
        if not result["ok"]:
            return {"results": [result]}
        fact = fact_of(team, result)
        memory = runtime.context.memory
        if memory is not None:
            thread = thread_of()
            await memory.remember(thread, MemoryNote(
                key=f"{thread}/r{fact['round']}/{fact['step_id']}/{fact['agent']}",
                text=fact["text"], source=f"agent:{fact['agent']}", trust=Trust(fact["trust"]),
                agent=fact["agent"], tools=tuple(fact["tools"])))
        return {"results": [result], "established": [fact]}

    return delegate
