"""The manager loop: plan → (progress → delegate in parallel)* → verify → final answer.

Every node does at most one logical model call (plus one schema retry), so a crash repeats
at most the call in flight; the manager's prompt is built from the ledger and compact step
results, so it stays flat however many rounds the run takes.
"""

from __future__ import annotations

from typing import Any

from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, Send
from pydantic import ValidationError

import prompts
from graphs.approval import ask_budget, review_plan
from graphs.errors import BudgetExhausted, ModelCallError
from graphs.ledger import ProgressLedgerOut, TaskLedgerOut, VerdictOut
from graphs.plan_check import check_plan
from graphs.planning import fallback_ledger, usable_plan
from graphs.ports import (
    BUDGET_ACTION,
    GateAction,
    GateRequest,
    Memory,
    MemoryNote,
    Message,
    ModelRequest,
    RunContext,
    Trust,
)
from graphs.specialist import build_specialist, thread_of
from graphs.state import DelegateInput, Fact, ManagerState, StepResult, TaskLedger, settled
from graphs.structured import ask_structured
from graphs.team import TeamSpec
from graphs.verdicts import decide
from graphs.views import (
    ENDINGS,
    brief,
    data_block,
    done_steps,
    dumps,
    fallback_answer,
    fingerprint,
    nothing_done_answer,
    plan_status,
    prompt_json,
    step_records,
)
from graphs.views import recent_results as recent_view
from tools.spec import Risk, SideEffect

MAX_BUDGET_EXTENSIONS = 3


def recursion_limit(team: TeamSpec) -> int:
    """A superstep budget that covers the team's limits with room to spare."""
    lim = team.limits
    return (lim.max_rounds + lim.max_replans + 2) * 4 + 10 + 2 * MAX_BUDGET_EXTENSIONS


def _stop_reason(err: ModelCallError) -> str:
    return "budget_exhausted" if isinstance(err, BudgetExhausted) else "model_unavailable"


async def _recalled(memory: Memory | None, task: str) -> str:
    """What the thread remembers about ``task``, as one labelled data block (or "")."""
    notes = await memory.recall(thread_of(), task) if memory else []
    if not notes:
        return ""
    return data_block("memory", dumps([{"fact": n.text, "source": n.source,
                                        "trust": n.trust.value} for n in notes]))


def _fact(team: TeamSpec, result: StepResult) -> Fact:
    """The step's report as a fact with provenance; untrusted when it read document text."""
    agent = team.agent(result["agent"])
    used = [t for t in result["tools"] if t["ok"]]
    untrusted = any((spec := agent.tool(t["name"]) if agent else None) is None
                    or spec.untrusted_output for t in used)
    return Fact(text=result["summary"], agent=result["agent"], step_id=result["step_id"],
                round=result["round"], trust=(Trust.UNTRUSTED if untrusted else Trust.AGENT).value,
                tools=[f"{t['name']}@{t['result_sha256'][:12]}" for t in used])


def build_graph(team: TeamSpec) -> StateGraph[ManagerState, RunContext, Any, Any]:
    """The uncompiled manager graph for ``team``; compile it with a checkpointer."""
    limits = team.limits
    agents = [{"name": a.name, "description": a.description} for a in team.agents]
    system: Message = {"role": "system", "content": prompts.render(
        "manager_system.j2", team=team.name, agents=agents)}
    specialist = build_specialist(team).compile()
    names = team.agent_names

    def views(state: ManagerState) -> dict[str, Any]:
        results = state.get("results", [])
        recent, omitted = recent_view(results, limits.recent_results, limits.summary_chars)
        return {
            "task": state["task"],
            "ledger_json": prompt_json(state["ledger"]),
            "status_json": prompt_json(plan_status(state["ledger"], results)),
            "results_json": prompt_json(recent),
            "omitted": omitted,
        }

    def signals(state: ManagerState, **extra: Any) -> dict[str, Any]:
        return {"round": state.get("round", 0), "replans": state.get("replans", 0),
                "stalls": state.get("stall_count", 0), "task_chars": len(state["task"]),
                "agents": len(names), **extra}

    def failure_signals(state: ManagerState) -> dict[str, Any]:
        # What went wrong last round, so the router can give this round a stronger model.
        failure = state.get("last_failure")
        return {"failure": failure, "rejections": state.get("rejections", 0)} if failure else {}

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
            notes, goto, reason = [f"planning failed: {e}"], "final", _stop_reason(e)
        notes = [*notes, *seen.pop("notes", [])]
        ledger = checked or fallback_ledger(team, state["task"])
        ctx.events.emit("plan_created", {"ledger": ledger, "notes": notes, **seen})
        update: dict[str, Any] = {"ledger": ledger, "notes": notes, "round": 0,
                                  "stall_count": 0, "replans": 0, "plan_since": 0,
                                  "started_at": ctx.clock.now()}
        if reason:
            update["stop_reason"] = reason
        return Command(goto=goto, update=update)

    def stop(reason: str, **update: Any) -> Command[str]:
        return Command(goto="final", update={**update, "stop_reason": reason})

    def out_of_budget(resume_at: str, err: BudgetExhausted) -> Command[str]:
        return Command(goto="budget", update={"budget_resume": resume_at,
                                              "notes": [f"out of budget: {err}"]})

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
                signals=signals(state, phase="progress", **failure_signals(state)))
        except BudgetExhausted as e:
            return out_of_budget("progress", e)
        except ModelCallError as e:
            return stop(_stop_reason(e), round=rnd, notes=[f"progress check failed: {e}"])
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
        sends = [Send("delegate", DelegateInput(
            round=rnd, index=i, step_id=s["step_id"], agent=s["agent"],
            instruction=s["instruction"], brief=ledger_brief)) for i, s in enumerate(steps)]
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

    async def delegate(payload: DelegateInput, runtime: Runtime[RunContext]) -> dict[str, Any]:
        runtime.context.events.emit("agent_started", {
            "agent": payload["agent"], "step_id": payload["step_id"],
            "instruction": payload["instruction"], "round": payload["round"]})
        out = await specialist.ainvoke(
            {**payload, "messages": [], "steps": 0, "queue": [], "cleared": None,
             "tools_used": []},
            {**get_config(), "recursion_limit": limits.specialist_max_steps * 12 + 10})
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
        fact = _fact(team, result)
        memory = runtime.context.memory
        if memory is not None:
            thread = thread_of()
            await memory.remember(thread, MemoryNote(
                key=f"{thread}/r{fact['round']}/{fact['step_id']}/{fact['agent']}",
                text=fact["text"], source=f"agent:{fact['agent']}", trust=Trust(fact["trust"]),
                agent=fact["agent"], tools=tuple(fact["tools"])))
        return {"results": [result], "established": [fact]}

    async def verify(state: ManagerState, runtime: Runtime[RunContext]) -> Command[str]:
        ctx = runtime.context
        rnd = state.get("round", 0)
        content = prompts.render("verify.j2", **views(state))
        try:
            verdict, problems = await ask_structured(
                ctx.router, role="manager.verify",
                messages=[system, {"role": "user", "content": content}], schema=VerdictOut,
                call_key=f"r{rnd}/verify", signals=signals(state, phase="verify"))
        except BudgetExhausted as e:
            return out_of_budget("verify", e)
        except ModelCallError as e:
            return stop(_stop_reason(e), notes=[f"verification failed: {e}"])
        ctx.events.emit("verification", {"round": rnd,
                                         "verdict": verdict.model_dump() if verdict else None})
        if verdict is not None and verdict.verified:
            return stop("satisfied")
        reason = verdict.reason if verdict else "the verifier's output was unusable"
        missing = verdict.missing if verdict else []
        notes = [*problems, f"verification rejected completion: {reason}",
                 *(f"missing: {m}" for m in missing)]
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

    async def replan(state: ManagerState, runtime: Runtime[RunContext]) -> Command[str]:
        ctx = runtime.context
        number = state.get("replans", 0) + 1
        problems = [*state.get("evidence", []), *state.get("notes", []),
                    *(f"{r['agent']} on {r['step_id']} failed: {r['summary'][:200]}"
                      for r in state.get("results", [])[-limits.recent_results:]
                      if not r["ok"])]
        v = views(state)
        content = prompts.render("replan.j2", task=v["task"], ledger_json=v["ledger_json"],
                                 results_json=v["results_json"], problems=problems,
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
                status_json=prompt_json(plan_status(state["ledger"], results)),
                records_json=prompt_json(step_records(results, 4 * limits.recent_results,
                                                      limits.summary_chars)))
            try:
                response = await ctx.router.complete(ModelRequest(
                    role="manager.final",
                    messages=[system, {"role": "user", "content": content}], call_key="final",
                    signals=signals(state, phase="final", stop_reason=reason)))
                answer = (response.content or "").strip()
            except ModelCallError:
                answer = ""
        if not answer:
            answer = fallback_answer(state["task"], reason, results)
        return {"final_answer": answer, "stop_reason": reason,
                "notes": [f"{len(done)} of {len(state['ledger']['plan'])} plan steps done"],
                **settled(state)}

    graph: StateGraph[ManagerState, RunContext, Any, Any] = StateGraph(
        ManagerState, context_schema=RunContext)
    graph.add_node("plan", plan, destinations=("review_plan", "progress", "final"))
    graph.add_node("review_plan", review, destinations=("progress", "replan", "final"))
    graph.add_node("progress", progress, destinations=("verify", "replan", "final",
                                                      "progress", "delegate", "budget"))
    graph.add_node("budget", budget, destinations=("progress", "verify", "final"))
    # add_node's overloads are typed for the graph's own state; a Send payload node
    # (input_schema=DelegateInput) does not fit them, so it is passed untyped.
    delegate_node: Any = delegate
    graph.add_node("delegate", delegate_node, input_schema=DelegateInput)
    graph.add_node("verify", verify, destinations=("final", "replan", "progress", "budget"))
    graph.add_node("replan", replan, destinations=("review_plan", "progress"))
    graph.add_node("final", final)
    graph.add_edge(START, "plan")
    graph.add_edge("delegate", "progress")
    graph.add_edge("final", END)
    return graph
