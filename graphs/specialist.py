"""The specialist loop: think (one model call) → gate each tool call → run it.

``gate`` checks each call's allow-list, arguments and policy, and is the only place that may
pause for a human (one ``interrupt`` per node, nothing with a side effect before it). A call
an approver cleared runs in the ``act`` node after the pause, so the node that resumes never
holds a side effect; a call that needed no one runs at the end of its ``gate`` pass (no
``interrupt`` was reached there, and a node of its own would cost a checkpoint per call).
Either way the ``ToolExecutor`` keys it by thread + tool call id so it never runs twice.
"""

from __future__ import annotations

import json
from typing import Any

from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import ValidationError

import prompts
from graphs.approval import ask_approval
from graphs.errors import ModelCallError
from graphs.grounding import mentioned
from graphs.ports import GateAction, GateRequest, ModelRequest, RunContext, ToolInvocation
from graphs.repeats import (
    call_fingerprint,
    prior_failure,
    repeat_block,
    repeat_note,
    with_failure,
    with_repeat,
)
from graphs.report import (
    REPORT_TOOL,
    calls_in_text,
    neutralise,
    parse_report,
    report_schema,
    summary_of,
)
from graphs.state import PendingCall, SpecialistState, ToolTrace, new_messages
from graphs.step_end import finish_with_text, step_end, ungrounded
from graphs.team import AgentSpec, TeamSpec
from graphs.views import data_block, prompt_json, sha256
from tools.spec import args_sha256, validation_message


def thread_of() -> str:
    """The run's thread id, from the config of the node being executed."""
    return str(get_config().get("configurable", {}).get("thread_id", "local"))


MAX_NUDGES = 1  # replies sent back to the model per step before its text is taken as is


def _tool_message(call_id: str, source: str, payload: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id,
            "content": data_block(source, prompt_json(payload))}


def tool_names(agent: AgentSpec) -> list[str]:
    """The names of the tools ``agent`` may call (``report`` aside)."""
    return [t.name for t in agent.tools]


def build_specialist(team: TeamSpec) -> StateGraph[SpecialistState, RunContext, Any, Any]:
    """The specialist subgraph shared by every agent of ``team`` (the agent is in the state)."""
    limits = team.limits

    def agent_of(state: SpecialistState) -> AgentSpec:
        agent = team.agent(state["agent"])
        if agent is None:  # the manager only sends known agents; guard anyway
            raise ValueError(f"unknown agent {state['agent']!r}")
        return agent

    async def think(state: SpecialistState, runtime: Runtime[RunContext]) -> Command[str]:
        agent = agent_of(state)
        steps = state.get("steps", 0)
        history = list(state.get("messages") or [])
        # ``messages`` is append-only: ``added`` is all this call writes to it. The first call
        # opens the conversation; the brief then lives in the system message only.
        added: tuple[dict[str, Any], ...] = ()
        opened: dict[str, Any] = {}
        if not history:
            system = prompts.render(
                "specialist_system.j2", agent=agent.name, team=team.name,
                instructions=agent.instructions, step_id=state["step_id"], brief=state["brief"],
            )
            added = new_messages({"role": "system", "content": system},
                                 {"role": "user", "content": state["instruction"]})
            opened = {"brief": ""}
        messages = [*history, *added]
        if steps >= limits.specialist_max_steps:
            last = next((m.get("content") for m in reversed(messages)
                         if m["role"] == "assistant" and m.get("content")), "")
            return Command(goto=END, update={
                "messages": added, **opened, "ok": False, "status": "blocked", "report": {},
                "summary": neutralise(f"BLOCKED: step limit of {limits.specialist_max_steps} "
                                      f"reached. {last}"),
            })
        failures = sum(1 for t in state.get("tools_used", []) if not t["ok"])
        key = f"r{state['round']}/{state['index']}/{state['step_id']}/{agent.name}/s{steps}"
        signals: dict[str, Any] = {"agent": agent.name, "model_role": agent.model_role,
                                   "step": steps, "tools": len(agent.tools),
                                   "prior_failures": failures,
                                   "arg_errors": state.get("arg_errors", 0)}
        if state.get("fresh_arg_errors"):
            # The model's last tool calls were malformed: a typed failure the router escalates.
            signals["failure"] = "tool_args_invalid"
        try:
            response = await runtime.context.router.complete(ModelRequest(
                role=f"specialist.{agent.name}", messages=messages, call_key=key,
                tools=[*(t.openai_schema() for t in agent.tools), report_schema()],
                signals=signals,
            ))
        except ModelCallError as e:
            return Command(goto=END, update={
                "messages": added, **opened, "ok": False, "queue": [], "status": "blocked",
                "report": {}, "summary": f"BLOCKED: no model could answer ({e})."})
        calls = [PendingCall(id=c.id or f"{key}/t{i}", name=c.name, arguments=c.arguments)
                 for i, c in enumerate(response.tool_calls)]
        content = response.content or ""
        assistant: dict[str, Any] = {"role": "assistant", "content": response.content}
        text_call = None if calls else calls_in_text(content, [*tool_names(agent), REPORT_TOOL])
        if text_call is not None and text_call.call is not None:
            # A tool call written as text: run it through the gate like any other.
            name, arguments = text_call.call
            calls = [PendingCall(id=f"{key}/text", name=name, arguments=arguments)]
            runtime.context.events.emit("tool_call_from_text", {
                "agent": agent.name, "tool": name, "step_id": state["step_id"]})
        if calls:
            assistant["tool_calls"] = [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls
            ]
        update: dict[str, Any] = {"messages": new_messages(*added, assistant), **opened,
                                  "steps": steps + 1, "fresh_arg_errors": 0}
        reports = [c for c in calls if c["name"] == REPORT_TOOL]
        if reports and len(reports) == len(calls):
            return finish_with_tool(state, reports[-1], update, runtime)
        if reports:
            # A report beside other calls would end the step before their results are seen.
            others = [c for c in calls if c["name"] != REPORT_TOOL]
            refusals = [_tool_message(c["id"], "tool:report", {
                "error": "report not accepted: call report alone, after the results of "
                         "your other tool calls have come back"}) for c in reports]
            update["messages"] = new_messages(*added, assistant, *refusals)
            return Command(goto="gate", update={**update, "queue": others})
        if calls:
            return Command(goto="gate", update={**update, "queue": calls})
        nudges = state.get("nudges", 0)
        if text_call is not None and text_call.problem and nudges < MAX_NUDGES:
            update["messages"] = new_messages(*added, assistant, {
                "role": "user", "content": prompts.render("specialist_nudge.j2",
                                                          problem=text_call.problem)})
            return Command(goto="think", update={**update, "nudges": nudges + 1})
        return Command(goto=END, update={**update, **finish_with_text(state, content)})

    def finish_with_tool(state: SpecialistState, call: PendingCall, update: dict[str, Any],
                         runtime: Runtime[RunContext]) -> Command[str]:
        try:
            report = parse_report(call["arguments"])
        except ValueError as e:
            error = f"invalid report: {e}"
            runtime.context.events.emit("tool_result", {
                "agent": state["agent"], "tool": REPORT_TOOL, "tool_call_id": call["id"],
                "ok": False, "executed": False, "error": error})
            update["messages"] = new_messages(*update["messages"], _tool_message(
                call["id"], "tool:report", {"error": error}))
            return Command(goto="think", update={
                **update, "arg_errors": state.get("arg_errors", 0) + 1, "fresh_arg_errors": 1})
        nudges = state.get("nudges", 0)
        why = ungrounded(state) if report.status == "done" else ""
        if why and nudges < MAX_NUDGES:
            # Sent back once: the agent may still look up what its step is about.
            error = (f"report not accepted: {why}. Call a tool about "
                     f"{', '.join(state.get('about') or [])}, or report blocked and say why")
            runtime.context.events.emit("tool_result", {
                "agent": state["agent"], "tool": REPORT_TOOL, "tool_call_id": call["id"],
                "ok": False, "executed": False, "error": error})
            update["messages"] = new_messages(*update["messages"], _tool_message(
                call["id"], "tool:report", {"error": error}))
            return Command(goto="think", update={**update, "nudges": nudges + 1})
        done = step_end(state, report.status, summary_of(report),
                       report.model_dump(exclude={"status", "summary"}), "")
        return Command(goto=END, update={**update, **done})

    def fingerprint_of(state: SpecialistState, call: PendingCall) -> str:
        spec = agent_of(state).tool(call["name"])  # a tool's wire name is the same tool
        return call_fingerprint(spec.name if spec else call["name"], call["arguments"])

    def refuse(state: SpecialistState, call: PendingCall, error: str, rest: list[PendingCall],
               runtime: Runtime[RunContext], args_hash: str = "",
               malformed: bool = False, kind: str = "") -> Command[str]:
        runtime.context.events.emit("tool_result", {
            "agent": state["agent"], "tool": call["name"], "tool_call_id": call["id"],
            "ok": False, "executed": False, "error": error,
        })
        trace = ToolTrace(name=call["name"], args_sha256=args_hash, ok=False,
                          result_sha256=sha256(error), refused=kind)
        fingerprint = fingerprint_of(state, call)
        update: dict[str, Any] = {
            "queue": rest,
            "messages": new_messages(
                _tool_message(call["id"], f"tool:{call['name']}", {"error": error})),
            "tools_used": [*state.get("tools_used", []), trace],
            "failed_calls": with_failure(state, fingerprint, call["id"], error, executed=False),
        }
        if malformed:
            update["arg_errors"] = state.get("arg_errors", 0) + 1
            update["fresh_arg_errors"] = state.get("fresh_arg_errors", 0) + 1
        return Command(goto="gate" if rest else "think", update=update)

    def repeated(state: SpecialistState, call: PendingCall, rest: list[PendingCall],
                 runtime: Runtime[RunContext]) -> Command[str] | None:
        """A repeat of a call already refused or failed in this step, answered from the first
        outcome without running anything; the step ends blocked at the repeat limit."""
        fingerprint = fingerprint_of(state, call)
        prior = prior_failure(state, fingerprint)
        if prior is None or call.get("approved_rule"):  # an approver's edit is never a repeat
            return None
        repeats = prior["repeats"] + 1
        note = repeat_note(prior)
        blocked = repeats >= limits.specialist_max_repeats
        runtime.context.events.emit("tool_result", {
            "agent": state["agent"], "tool": call["name"], "tool_call_id": call["id"],
            "ok": False, "executed": False, "error": note, "repeat_of": prior["call_id"],
            "repeats": repeats, "step_blocked": blocked,
        })
        trace = ToolTrace(name=call["name"], args_sha256=fingerprint.split(":")[-1], ok=False,
                          result_sha256=sha256(note), refused="repeated")
        update: dict[str, Any] = {
            "queue": rest,
            "messages": new_messages(
                _tool_message(call["id"], f"tool:{call['name']}", {"error": note})),
            "tools_used": [*state.get("tools_used", []), trace],
            "failed_calls": with_repeat(state, fingerprint),
        }
        if blocked:
            end = step_end(state, "blocked", repeat_block(call["name"], prior, repeats), {}, "")
            return Command(goto=END, update={**update, **end})
        return Command(goto="gate" if rest else "think", update=update)

    async def gate(state: SpecialistState, runtime: Runtime[RunContext]) -> Command[str]:
        agent = agent_of(state)
        call, *rest = state["queue"]
        if (answered := repeated(state, call, rest, runtime)) is not None:
            return answered
        spec = agent.tool(call["name"])
        if spec is None:
            allowed = ", ".join(t.name for t in agent.tools)
            return refuse(state, call, f"tool {call['name']!r} is not available to "
                          f"{agent.name}; its tools are: {allowed}", rest, runtime,
                          malformed=True, kind="not_allowed")
        try:
            raw = json.loads(call["arguments"] or "{}")
            if not isinstance(raw, dict):
                raise ValueError("arguments must be a JSON object")
            args = spec.validate(raw).model_dump(mode="json")
        except (ValueError, ValidationError) as e:
            reason = validation_message(e) if isinstance(e, ValidationError) else str(e)
            return refuse(state, call, f"invalid arguments: {reason}", rest, runtime,
                          malformed=True, kind="invalid")
        def cleared(note: str = "") -> dict[str, Any]:
            return {"id": call["id"], "name": spec.name, "args": args, "note": note,
                    "fingerprint": fingerprint_of(state, call)}

        if not runtime.context.shadow and await runtime.context.tools.recorded(
                f"{thread_of()}:{call['id']}"):
            # Cleared and started by a pass of this node that stopped before its checkpoint:
            # it is finished (replayed or reconciled) on the decision taken then.
            return await run_call(state, cleared(), rest, runtime)
        decision = runtime.context.gate.check(GateRequest(
            team=team.name, agent=agent.name, tool=spec.name, args=args,
            side_effect=spec.side_effect, risk=spec.risk, thread_id=thread_of(),
            tenant=runtime.context.tenant,
        ))
        if decision.action == GateAction.DENY:
            return refuse(state, call, f"denied by policy rule {decision.rule}: "
                          f"{decision.reason}", rest, runtime, args_sha256(args),
                          kind="denied")
        note, asked = "", False
        if decision.action == GateAction.REQUIRE_APPROVAL and runtime.context.shadow:
            # Shadow runs change nothing, so nobody is asked; the record says who would be.
            note = f"would need approval by {decision.approver_group} (rule {decision.rule})"
        elif decision.action == GateAction.REQUIRE_APPROVAL and (
                call.get("approved_rule") != decision.rule):
            # An edit that lands under another rule (e.g. above this approver's limit) asks
            # again; one under the same rule was approved by the editor.
            outcome = ask_approval(call, spec, args, decision, agent.name, thread_of())
            asked = True
            if outcome.refusal is not None:
                return refuse(state, call, outcome.refusal, rest, runtime, args_sha256(args),
                              kind="rejected")
            if outcome.edited_args is not None:
                # An edit goes through validation and the policy again, as a new gate pass.
                edited = PendingCall(id=call["id"], name=call["name"],
                                     arguments=json.dumps(outcome.edited_args),
                                     approved_rule=decision.rule)
                return Command(goto="gate", update={"queue": [edited, *rest]})
        if asked:  # resumed from a pause: the call runs in a node of its own
            return Command(goto="act", update={"queue": rest, "cleared": cleared(note)})
        return await run_call(state, cleared(note), rest, runtime)

    async def act(state: SpecialistState, runtime: Runtime[RunContext]) -> Command[str]:
        return await run_call(state, state["cleared"] or {}, list(state.get("queue") or []),
                              runtime)

    async def run_call(state: SpecialistState, cleared: dict[str, Any], rest: list[PendingCall],
                       runtime: Runtime[RunContext]) -> Command[str]:
        """Run one cleared call; the loop goes on with ``rest`` (the calls still queued)."""
        thread = thread_of()
        events = runtime.context.events
        events.emit("tool_called", {
            "agent": state["agent"], "tool": cleared["name"], "tool_call_id": cleared["id"],
            "args": cleared["args"], "args_sha256": args_sha256(cleared["args"]),
        })
        outcome = await runtime.context.tools.execute(ToolInvocation(
            key=f"{thread}:{cleared['id']}", thread_id=thread, agent=state["agent"],
            tool=cleared["name"], args=cleared["args"], note=cleared.get("note") or "",
        ))
        events.emit("tool_result", {
            "agent": state["agent"], "tool": cleared["name"], "tool_call_id": cleared["id"],
            "ok": outcome.ok, "executed": True, "replayed": outcome.replayed,
            "result": dict(outcome.data),
        })
        trace = ToolTrace(name=cleared["name"], args_sha256=args_sha256(cleared["args"]),
                          ok=outcome.ok, result_sha256=sha256(dict(outcome.data)))
        if state.get("about"):
            trace["about"] = mentioned(state.get("about") or [], cleared["args"],
                                       dict(outcome.data))
        update: dict[str, Any] = {
            "queue": rest, "cleared": None,
            "messages": new_messages(_tool_message(cleared["id"], f"tool:{cleared['name']}",
                                                   dict(outcome.data))),
            "tools_used": [*state.get("tools_used", []), trace],
        }
        if not outcome.ok and cleared.get("fingerprint"):
            error = str(outcome.data.get("error") or "the tool reported a failure")
            update["failed_calls"] = with_failure(state, cleared["fingerprint"], cleared["id"],
                                                  error, executed=True)
        return Command(goto="gate" if rest else "think", update=update)

    graph: StateGraph[SpecialistState, RunContext, Any, Any] = StateGraph(
        SpecialistState, context_schema=RunContext
    )
    graph.add_node("think", think, destinations=("gate", END))
    graph.add_node("gate", gate, destinations=("act", "gate", "think", END))
    graph.add_node("act", act, destinations=("gate", "think"))
    graph.add_edge(START, "think")
    return graph
