"""How a run ends: the verifier checks a claimed completion, and the final answer is written
from what the step results and tool records show (or, when nothing completed, without a
model at all)."""

from __future__ import annotations

from typing import Any, Protocol

from langgraph.runtime import Runtime
from langgraph.types import Command

import prompts
from graphs.errors import BudgetExhausted, ModelCallError
from graphs.ledger import VerdictOut
from graphs.manager_common import Manager, out_of_budget, stop, stop_reason
from graphs.ports import ModelRequest, RunContext
from graphs.state import ManagerState, StepResult, ToolTrace, settled
from graphs.structured import ask_structured
from graphs.team import TeamSpec
from graphs.views import (
    ENDINGS,
    calls_that_ran,
    done_steps,
    fallback_answer,
    nothing_done_answer,
    plan_status,
    prompt_json,
    status_lines,
    step_records,
)
from tools.spec import SideEffect


class Verify(Protocol):
    """The ``verify`` node's signature."""

    async def __call__(self, state: ManagerState, *,
                       runtime: Runtime[RunContext]) -> Command[str]: ...


class Final(Protocol):
    """The ``final`` node's signature."""

    async def __call__(self, state: ManagerState, *,
                       runtime: Runtime[RunContext]) -> dict[str, Any]: ...


def build_verify(m: Manager) -> Verify:
    """The ``verify`` node: a claimed completion passes the verifier, or the run goes on."""
    limits = m.team.limits

    async def verify(state: ManagerState, runtime: Runtime[RunContext]) -> Command[str]:
        ctx = runtime.context
        rnd = state.get("round", 0)
        content = prompts.render("verify.j2", **m.views(state))
        try:
            verdict, problems = await ask_structured(
                ctx.router, role="manager.verify",
                messages=[m.system, {"role": "user", "content": content}], schema=VerdictOut,
                call_key=f"r{rnd}/verify", signals=m.signals(state, phase="verify"))
        except BudgetExhausted as e:
            return out_of_budget("verify", e)
        except ModelCallError as e:
            return stop(stop_reason(e), notes=[f"verification failed: {e}"])
        ctx.events.emit("verification", {"round": rnd,
                                         "verdict": verdict.model_dump() if verdict else None})
        if verdict is not None and verdict.verified:
            return stop("satisfied")
        reason = verdict.reason if verdict else "the verifier's output was unusable"
        missing = verdict.missing if verdict else []
        notes = [*problems, f"verification rejected completion: {reason}",
                 *(f"missing: {x}" for x in missing)]
        evidence = [*state.get("evidence", []), f"round {rnd}: verifier rejected ({reason})"]
        stall_count = state.get("stall_count", 0) + 1
        rejected = {"last_failure": "verifier_rejected",
                    "rejections": state.get("rejections", 0) + 1}
        if stall_count >= limits.max_stalls:
            if state.get("replans", 0) < limits.max_replans:
                return Command(goto="replan", update={
                    "notes": notes, "stall_count": stall_count, "evidence": evidence, **rejected})
            return stop("unverified", notes=notes, stall_count=stall_count)
        return Command(goto="progress", update={"notes": notes, "stall_count": stall_count,
                                                "evidence": evidence, **rejected})

    return verify


def changes_made(team: TeamSpec, results: list[StepResult], shadow: bool = False) -> str:
    """The record's own line on what the run changed, put under a model-written answer:
    every successful call of a tool that writes, with its agent and step. Prose can claim a
    change that never happened (a small model once wrote that a refund was issued when the
    step had only looked the order up); this line cannot."""
    def writes(r: StepResult, t: ToolTrace) -> bool:
        agent = team.agent(r["agent"])
        spec = agent.tool(t["name"]) if agent else None
        return spec is None or spec.side_effect == SideEffect.WRITE

    made = calls_that_ran(results, writes)
    if shadow:
        return ("Shadow run, nothing was changed; the calls that would have: "
                f"{', '.join(made)}." if made else "Shadow run: nothing was changed.")
    if not made:
        return "Changes made by this run (from its tool record): none."
    return f"Changes made by this run (from its tool record): {', '.join(made)}."


def build_final(m: Manager) -> Final:
    """The ``final`` node: the answer, grounded in the record, and the run's last state."""
    limits = m.team.limits

    async def final(state: ManagerState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        ctx = runtime.context
        reason = state.get("stop_reason", "satisfied")
        results = state.get("results", [])
        done = done_steps(results)
        answer = ""
        if not done:
            # Nothing completed: there is nothing a model could ground an answer in.
            answer = nothing_done_answer(state["task"], reason, results,
                                         list(state.get("notes", [])))
        else:
            content = prompts.render(
                "final.j2", task=state["task"], stop_reason=reason,
                ending=ENDINGS.get(reason, reason),
                status_text=status_lines(plan_status(state["ledger"], results)),
                records_json=prompt_json(step_records(results, 4 * limits.recent_results,
                                                      limits.summary_chars)))
            try:
                response = await ctx.router.complete(ModelRequest(
                    role="manager.final",
                    messages=[m.system, {"role": "user", "content": content}],
                    call_key="final",
                    signals=m.signals(state, phase="final", stop_reason=reason)))
                answer = (response.content or "").strip()
            except ModelCallError:
                answer = ""
        if not answer:
            answer = fallback_answer(state["task"], reason, results)
        if done:
            answer = f"{answer}\n\n{changes_made(m.team, results, ctx.shadow)}"
        return {"final_answer": answer, "stop_reason": reason,
                "notes": [f"{len(done)} of {len(state['ledger']['plan'])} plan steps done"],
                **settled(state)}

    return final
