"""The manager loop: plan → (progress → delegate in parallel)* → verify → final answer.

Every node does at most one logical model call (plus one schema retry), so a crash repeats
at most the call in flight; the manager's prompt is built from the ledger and compact step
results, so it stays flat however many rounds the run takes.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, Send
from pydantic import ValidationError

import prompts
from graphs.approval import ask_budget, review_plan
from graphs.delegate import build_delegate
from graphs.ending import build_final, build_verify
from graphs.errors import BudgetExhausted, ModelCallError
from graphs.grounding import id_patterns, step_about
from graphs.ledger import ProgressLedgerOut, TaskLedgerOut
from graphs.manager_common import Manager, out_of_budget, stop, stop_reason
from graphs.plan_check import check_plan
from graphs.planning import fallback_ledger, usable_plan
from graphs.ports import BUDGET_ACTION, GateAction, GateRequest, Memory, RunContext
from graphs.specialist import thread_of
from graphs.state import DelegateInput, ManagerState, TaskLedger
from graphs.structured import ask_structured
from graphs.team import TeamSpec
from graphs.verdicts import decide
from graphs.views import brief, data_block, dumps
from tools.spec import Risk, SideEffect

MAX_BUDGET_EXTENSIONS = 3


def recursion_limit(team: TeamSpec) -> int:
    """A superstep budget that covers the team's limits with room to spare."""
    lim = team.limits
    return (lim.max_rounds + lim.max_replans + 2) * 4 + 10 + 2 * MAX_BUDGET_EXTENSIONS


async def _recalled(memory: Memory | None, task: str) -> str:
    """What the thread remembers about ``task``, as one labelled data block (or "")."""
    notes = await memory.recall(thread_of(), task) if memory else []
    if not notes:
        return ""
    return data_block("memory", dumps([{"fact": n.text, "source": n.source,
                                        "trust": n.trust.value} for n in notes]))


def build_graph(team: TeamSpec) -> StateGraph[ManagerState, RunContext, Any, Any]:
    """The uncompiled manager graph for ``team``; compile it with a checkpointer."""
    limits = team.limits
    m = Manager.of(team)
    system, names, views, signals = m.system, m.names, m.views, m.signals
    id_kinds = {a.name: id_patterns(a.tools) for a in team.agents}

    async def plan(state: ManagerState, runtime: Runtime[RunContext]) -> Command[str]:
        ctx = runtime.context
        memory = await _recalled(ctx.memory, state["task"])
        messages = [system, {"role": "user", "content": prompts.render(
            "plan.j2", task=state["task"], agent_names=names, memory=memory)}]
        goto, reason = ("review_plan" if team.plan_review else "progress"), None
        checked: TaskLedger | None = None
        seen: dict[str, Any] = {}
        try:
            parsed, notes = await ask_structured(
                ctx.router, role="manager.plan", messages=messages, schema=TaskLedgerOut,
                call_key="plan", signals=signals(state, phase="plan"))
            checked, seen = await usable_plan(ctx.router, messages, parsed, names, "plan",
                                              signals(state, phase="plan"))
        except ModelCallError as e:
            notes, goto, reason = [f"planning failed: {e}"], "final", stop_reason(e)
        notes = [*notes, *seen.pop("notes", [])]
        ledger = checked or fallback_ledger(team, state["task"])
        ctx.events.emit("plan_created", {"ledger": ledger, "notes": notes, **seen})
        update: dict[str, Any] = {"ledger": ledger, "notes": notes, "round": 0,
                                  "stall_count": 0, "replans": 0, "plan_since": 0,
                                  "started_at": ctx.clock.now()}
        if reason:
            update["stop_reason"] = reason
        return Command(goto=goto, update=update)

    def budget(state: ManagerState, runtime: Runtime[RunContext]) -> Command[str]:
        """Ask an approver to extend the run's budget, if the policy says one may."""
        ctx = runtime.context
        number = state.get("budget_extensions", 0)
        why = next((n for n in reversed(state.get("notes", []))
                    if n.startswith("out of budget")), "out of budget")
        args = {"reason": why, "extensions_so_far": number}
        decision = ctx.gate.check(GateRequest(
            team=team.name, agent="manager", tool=BUDGET_ACTION, args=args,
            side_effect=SideEffect.NONE, risk=Risk.MEDIUM, thread_id=thread_of(),
            tenant=ctx.tenant))
        if decision.action != GateAction.REQUIRE_APPROVAL or number >= MAX_BUDGET_EXTENSIONS:
            return stop("budget_exhausted")
        answer = ask_budget(args, decision, thread_of(), number)
        if answer.kind == "approve":
            return Command(goto=state.get("budget_resume") or "progress",
                           update={"budget_extensions": number + 1})
        return stop("budget_exhausted", notes=[
            f"budget extension refused: {answer.message or 'no reason given'}"])

    async def progress(state: ManagerState, runtime: Runtime[RunContext]) -> Command[str]:
        ctx = runtime.context
        rnd = state.get("round", 0) + 1
        if rnd > limits.max_rounds:
            return stop("round_limit")
        if ctx.clock.now() - state.get("started_at", ctx.clock.now()) > limits.time_limit_s:
            return stop("time_limit")
        results = state.get("results", [])
        notes = list(state.get("notes", []))
        # Mechanical loop check: the last round repeated a step's exact behaviour.
        last_round = [r for r in results if r["round"] == rnd - 1]
        earlier = {r["fingerprint"] for r in results if r["round"] < rnd - 1}
        looping = any(r["fingerprint"] in earlier for r in last_round)
        if looping:
            notes.append("the last round repeated an earlier step exactly (same calls, "
                         "same results)")
        content = prompts.render("progress.j2", round=rnd, max_rounds=limits.max_rounds,
                                 notes=notes, agent_names=names, **views(state))
        try:
            parsed, problems = await ask_structured(
                ctx.router, role="manager.progress",
                messages=[system, {"role": "user", "content": content}],
                schema=ProgressLedgerOut, call_key=f"r{rnd}/progress",
                signals=signals(state, phase="progress", **m.failure_signals(state)))
        except BudgetExhausted as e:
            return out_of_budget("progress", e)
        except ModelCallError as e:
            return stop(stop_reason(e), round=rnd, notes=[f"progress check failed: {e}"])
        decision = decide(parsed, state["ledger"], results, since=state.get("plan_since", 0),
                          agents=names, task=state["task"], limit=limits.max_parallel,
                          looping=looping)
        for kind, data in decision.events:
            ctx.events.emit(kind, {"round": rnd, **data})
        steps = decision.steps
        stalls = state.get("stall_count", 0)  # a bare "satisfied" claim eases no stall
        stall_count = stalls + 1 if decision.stalled else max(0, stalls - 1) if steps else stalls
        evidence = list(state.get("evidence", []))
        if decision.stalled:
            evidence.append(f"round {rnd}: stalled ({decision.why_stalled})")
        ledger_view = parsed.model_dump() if parsed else None
        round_notes = problems + decision.notes
        ctx.events.emit("ledger_updated", {
            "round": rnd, "progress": ledger_view, "next_steps": steps,
            "dispatched_by": "foreman" if decision.by_foreman else "model",
            "stall_count": stall_count, "loop_detected": looping, "notes": round_notes})
        update: dict[str, Any] = {"round": rnd, "stall_count": stall_count,
                                  "notes": round_notes, "evidence": evidence[-8:],
                                  "last_progress": ledger_view or {},
                                  "last_failure": "stall" if decision.stalled else ""}
        ledger = decision.ledger or state["ledger"]
        if decision.ledger is not None:
            update["ledger"] = decision.ledger
        if decision.satisfied:
            return Command(goto="verify", update=update)
        if decision.cannot_proceed:
            return stop("blocked", **update)
        if stall_count >= limits.max_stalls:
            if state.get("replans", 0) < limits.max_replans:
                return Command(goto="replan", update=update)
            return stop("stalled", **update)
        if not steps:
            return Command(goto="progress", update=update)
        ledger_brief = brief(ledger, results, limits.recent_results, limits.summary_chars)
        goals = {p["id"]: p["goal"] for p in ledger["plan"]}
        sends = [Send("delegate", DelegateInput(
            round=rnd, index=i, step_id=s["step_id"], agent=s["agent"],
            instruction=s["instruction"], brief=ledger_brief, about=step_about(
                id_kinds[s["agent"]], goals.get(s["step_id"], ""), s["instruction"],
                state["task"]))) for i, s in enumerate(steps)]
        return Command(goto=sends, update=update)

    def review(state: ManagerState, runtime: Runtime[RunContext]) -> Command[str]:
        revision = state.get("replans", 0)
        answer = review_plan(dict(state["ledger"]), thread_of(), revision)
        runtime.context.events.emit("plan_reviewed", {"decision": answer.kind,
                                                      "message": answer.message})
        if answer.kind == "approve":
            return Command(goto="progress")
        if answer.kind == "edit" and answer.args is not None:
            try:
                edited = TaskLedgerOut.model_validate(answer.args.get("ledger", answer.args))
            except ValidationError:
                return Command(goto="replan", update={"evidence": [
                    "the reviewer's edited plan was not a valid ledger"]})
            fixed = check_plan(edited.to_state(), names, force=True)
            if fixed.errors:
                return Command(goto="replan", update={"evidence": [
                    f"the reviewer's edited plan was not usable: {'; '.join(fixed.errors)}"]})
            if fixed.changes:
                runtime.context.events.emit("plan_repaired", {"changes": fixed.changes})
            return Command(goto="progress", update={"ledger": fixed.ledger,
                                                    "plan_since": state.get("round", 0)})
        if answer.kind == "reject" and answer.message.startswith("expired"):
            return stop("approval_expired", notes=[f"plan review {answer.message}"])
        if answer.kind == "reject" and not answer.message:
            return stop("plan_rejected")
        return Command(goto="replan", update={"evidence": [
            f"plan reviewer asked for changes: {answer.message or 'no reason given'}"]})

    async def replan(state: ManagerState, runtime: Runtime[RunContext]) -> Command[str]:
        ctx = runtime.context
        number = state.get("replans", 0) + 1
        problems = [*state.get("evidence", []), *state.get("notes", []),
                    *(f"{r['agent']} on {r['step_id']} failed: {r['summary'][:200]}"
                      for r in state.get("results", [])[-limits.recent_results:]
                      if not r["ok"])]
        v = views(state)
        content = prompts.render("replan.j2", task=v["task"], ledger_json=v["ledger_json"],
                                 results_text=v["results_text"], problems=problems,
                                 agent_names=names)
        messages = [system, {"role": "user", "content": content}]
        checked: TaskLedger | None = None
        seen: dict[str, Any] = {}
        try:
            parsed, notes = await ask_structured(
                ctx.router, role="manager.plan", messages=messages,
                schema=TaskLedgerOut, call_key=f"replan{number}",
                signals=signals(state, phase="replan"))
            checked, seen = await usable_plan(ctx.router, messages, parsed, names,
                                              f"replan{number}", signals(state, phase="replan"))
        except ModelCallError as e:
            notes = [f"replanning failed: {e}"]
        notes = [*notes, *seen.pop("notes", [])]
        ledger = checked or state["ledger"]
        ctx.events.emit("replanned", {"replans": number, "problems": problems,
                                      "ledger": ledger, "notes": notes, **seen})
        return Command(goto="review_plan" if team.plan_review else "progress", update={
            "ledger": ledger, "replans": number, "stall_count": 0, "evidence": [],
            "plan_since": state.get("round", 0),
            "notes": [*notes, f"replanned ({number}) after: {'; '.join(problems[-3:])}"]})

    graph: StateGraph[ManagerState, RunContext, Any, Any] = StateGraph(
        ManagerState, context_schema=RunContext)
    graph.add_node("plan", plan, destinations=("review_plan", "progress", "final"))
    graph.add_node("review_plan", review, destinations=("progress", "replan", "final"))
    graph.add_node("progress", progress, destinations=("verify", "replan", "final",
                                                      "progress", "delegate", "budget"))
    graph.add_node("budget", budget, destinations=("progress", "verify", "final"))
    # add_node's overloads are typed for the graph's own state; a Send payload node
    # (input_schema=DelegateInput) does not fit them, so it is passed untyped.
    delegate_node: Any = build_delegate(team)
    graph.add_node("delegate", delegate_node, input_schema=DelegateInput)
    graph.add_node("verify", build_verify(m),
                   destinations=("final", "replan", "progress", "budget"))
    graph.add_node("replan", replan, destinations=("review_plan", "progress"))
    graph.add_node("final", build_final(m))
    graph.add_edge(START, "plan")
    graph.add_edge("delegate", "progress")
    graph.add_edge("final", END)
    return graph
