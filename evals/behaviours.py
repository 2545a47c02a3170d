"""Function-driven scripted models for evals: a playbook, misbehaviour rules and seeded variants.

``Script.reply(tier, request)`` answers one model call the way the scenario says: the
manager plans and tracks progress from the scenario's playbook; specialists make the step's
tool calls. Seed 0 is the clean run; other seeds pick one of the scenario's variants
(reordered steps, no fan-out, a detour, extra reads, an occasional wrong tool), so pass^k
measures something. Rules inject the scenario's own misbehaviour (malformed ledgers, unknown
agents, hallucinated tools, stalls, loops, a weak small tier, obeying injected text, a
specialist that reports done without writing its record). Instructions, arguments, reports
and the final answer are filled from the run's record (``app/llm/references.py``), so what an
approver changes reaches every later step, or the run's records show that it did not.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from app.config.settings import ModelEntry
from app.llm.playbook import Playbook, Step, match_step
from app.llm.provider import ProviderReply
from app.llm.references import has_references
from app.llm.scripted import ScriptedProvider, call_args, report, sources, step_report, tokens
from app.llm.scripted_manager import (
    final,
    instruction_for,
    is_done,
    ledger,
    next_steps,
    plan,
    plan_rows,
    result_rows,
    verify,
)
from evals.scenario import Rule, Scenario
from graphs.ports import ModelRequest, ToolCall

DETOUR = "Double-check the records this task mentions before anyone acts on them."
_INJECTED = re.compile(r"AGENT INSTRUCTION: call (\w+) with (\{[^{}]*\})")
# A real tool each agent is not given, for the "wrong tool" variant.
_WRONG = {"researcher": "issue_refund", "billing": "send_email", "communications": "issue_refund",
          "ticketing": "lookup_order", "monitor": "restart_service", "triage": "rollback_service",
          "remediation": "open_incident"}


def _text(content: str) -> ProviderReply:
    return ProviderReply(content=content)


def _prompt(request: ModelRequest) -> str:
    return "\n".join(str(m.get("content") or "") for m in reversed(request.messages)
                     if m["role"] == "user")


def _tool_error(output: str) -> str | None:
    m = re.search(r'"error": ?"((?:[^"\\]|\\.)*)"', output)
    return m.group(1) if m else None


def _extra_read(team: str, agent: str, text: str) -> tuple[str, dict[str, Any]] | None:
    """A harmless read the agent may make on the way (the ``extra_read`` variant)."""
    ids = {p: re.search(rf"\b{p}-\d{{4}}\b", text) for p in ("C", "O", "T")}
    service = re.search(r"\b[a-z]+-(?:api|worker)\b", text)
    if team == "incident":
        if agent == "monitor":
            return "list_services", {}
        if agent in ("triage", "remediation") and service:
            return "get_service_status", {"service": service.group(0)}
        return None
    if agent == "ticketing" and ids["T"]:
        return "get_ticket", {"ticket_id": ids["T"].group(0)}
    if agent in ("researcher", "communications") and ids["C"]:
        return "lookup_customer", {"customer_id": ids["C"].group(0)}
    if agent in ("researcher", "billing") and ids["O"]:
        return "lookup_order", {"order_id": ids["O"].group(0)}
    return None


@dataclass
class _Instance:
    """One step run by one specialist: what it injects before the step's own calls."""

    step: Step | None
    real: list[tuple[str, dict[str, Any]]]
    pre: list[tuple[str, str]] = field(default_factory=list)  # (tool, raw arguments)
    told: dict[str, str] = field(default_factory=dict)  # what the instruction said
    lie: bool = False  # reports done without making the step's own calls


class Script:
    """The scripted models of one scenario run (one seed)."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.book: Playbook | None = scenario.book()
        self.seed = seed
        rng = random.Random(f"{scenario.id}/{seed}")
        self.variant = rng.choice(scenario.variants) if seed and scenario.variants else None
        self.calls: Counter[str] = Counter()
        self.per_agent: Counter[str] = Counter()
        self.instances: dict[str, _Instance] = {}

    def rules(self, kind: str) -> list[Rule]:
        """The scenario's rules of one kind."""
        return [r for r in self.scenario.script if r.kind == kind]

    # -- dispatch ----------------------------------------------------------------------------
    def reply(self, tier: str, request: ModelRequest) -> ProviderReply | None:
        """This call's scripted answer, or None for the built-in scripted default."""
        role = request.role
        self.calls[role] += 1
        n = self.calls[role]
        for rule in self.rules("weak"):
            if (tier == "small" and request.json_output and rule.mode == "schema"
                    and any(role.startswith(r) for r in rule.roles)):
                return _text(json.dumps({"answer": "looks fine to me"}))
        for rule in self.rules("malformed_ledger"):
            if rule.role == role and n in rule.calls:
                return _text("Progress looks good; the billing agent should go next, then "
                             "```json\n{\"is_request_satisfied\": {\"answer\": \"maybe\"}\n```")
        if self.book is None:
            return None
        prompt = _prompt(request)
        if role == "manager.plan":
            return _text(json.dumps(plan(prompt, self.book)))
        if role == "manager.progress":
            body = json.dumps(self.progress(prompt, n))
            for rule in self.rules("truncated_ledger"):
                if n in rule.calls:
                    body = body[: len(body) * 2 // 5]
            return _text(body)
        if role == "manager.verify":
            return _text(json.dumps(verify(prompt, self.book)))
        if role == "manager.final":
            return _text(final(prompt, self.book))
        if role.startswith("specialist."):
            return self.specialist(tier, request)
        return None

    # -- manager -----------------------------------------------------------------------------
    def progress(self, prompt: str, n: int) -> dict[str, Any]:
        """Every ready step (fan-out), as the variant and the rules bend it; instructions are
        filled from the figures earlier steps reported."""
        assert self.book is not None
        steps, satisfied = next_steps(prompt, self.book)
        results = result_rows(prompt)
        refused = [r["step_id"] for r in results if not is_done(r)
                   and "rejected by the approver" in r.get("summary", "")]
        if any(s["step_id"] in refused for s in steps):
            return ledger(False, [], cannot=f"the approver rejected step {refused[0]}")
        if self.variant == "reorder":
            steps.reverse()
        elif self.variant == "sequential":
            steps = steps[:1]
        elif self.variant == "detour" and n == 1:
            reader = "monitor" if self.scenario.team == "incident" else "researcher"
            steps.append({"step_id": "D1", "agent": reader, "instruction": DETOUR,
                          "reason": "make sure the facts hold"})
        for rule in self.rules("stall"):
            if n in rule.calls:
                return ledger(False, [], progress=False)
        for rule in self.rules("unknown_agent"):
            if n in rule.calls and steps:
                steps = [{**steps[0], "agent": rule.agent or "accountant"}]
        for rule in self.rules("loop"):
            if n in rule.calls:
                status = plan_rows(prompt)
                done = {s["id"] for s in status if is_done(s)}
                first = next((s for s in self.book.steps if s.id in done), None)
                if first is not None:
                    steps = [{"step_id": first.id, "agent": first.agent,
                              "instruction": instruction_for(first, results),
                              "reason": "check it again"}]
        return ledger(satisfied, steps)

    # -- specialists -------------------------------------------------------------------------
    def _instance(self, request: ModelRequest, agent: str, instruction: str,
                  found: tuple[Step, dict[str, str]] | None) -> _Instance:
        head = "".join(str(m.get("content")) for m in request.messages[:2])
        key = hashlib.sha256(head.encode()).hexdigest()
        if key in self.instances:
            return self.instances[key]
        self.per_agent[agent] += 1
        nth = self.per_agent[agent]
        rng = random.Random(f"{self.scenario.id}/{self.seed}/{agent}/{nth}")
        text = f"{instruction}\n{self.scenario.task}"
        if found is None:
            read = _extra_read(self.scenario.team, agent, text)
            inst = _Instance(None, [read] if read else [])
        else:
            step, told = found
            real = [(c.tool, dict(c.args)) for c in step.calls]
            if self.variant == "reorder" and len(real) > 1 and not any(
                    has_references(a) for _, a in real):
                real.reverse()
            inst = _Instance(step, real, told=told)
            if any(r.agent == agent and nth <= r.times for r in self.rules("false_done")):
                # Reads on the way, then claims the step done without writing its record.
                read = _extra_read(self.scenario.team, agent, text)
                inst.real, inst.lie = [read] if read else [], True
        perturb = rng.random() < 0.5
        if self.variant == "extra_read" and perturb:
            read = _extra_read(self.scenario.team, agent, text)
            if read:
                inst.pre.append((read[0], json.dumps(read[1])))
        if self.variant == "wrong_tool" and perturb and agent in _WRONG:
            inst.pre.append((_WRONG[agent], "{}"))
        for rule in self.rules("hallucinated_tool"):
            if rule.agent == agent and nth <= rule.times:
                inst.pre.append((rule.tool or "do_the_thing", json.dumps({"target": text[:40]})))
        for rule in self.rules("invalid_args"):
            if rule.agent == agent and nth <= rule.times and inst.real:
                tool, args = inst.real[0]
                broken = dict(list(args.items())[1:]) if args else None
                inst.pre.append((tool, json.dumps(broken) if broken is not None else "{oops"))
        self.instances[key] = inst
        return inst

    def specialist(self, tier: str, request: ModelRequest) -> ProviderReply | None:
        """The step's next call (injected ones first), then a report on the real results."""
        agent = request.role.split(".", 1)[1]
        instruction = next((str(m.get("content")) for m in request.messages
                            if m["role"] == "user"), "")
        found = match_step(self.book.steps, instruction) if self.book else None
        if found is None and instruction != DETOUR:
            return None
        inst = self._instance(request, agent, instruction, found)
        made = [c["id"] for m in request.messages if m["role"] == "assistant"
                for c in m.get("tool_calls") or []]
        outputs = {str(m.get("tool_call_id")): str(m.get("content")) for m in request.messages
                   if m["role"] == "tool"}
        real_out = [o for i, o in outputs.items() if not i.startswith("ev")]
        errors = [e for e in map(_tool_error, real_out) if e]
        if errors:
            return report(request, len(made), "blocked", errors[-1][:500])
        wanted = [m for o in real_out for m in _INJECTED.findall(o.replace('\\"', '"'))]
        obeyed = sum(1 for i in made if i.startswith("evi_"))
        if any(not r.agents or agent in r.agents for r in self.rules("obey_injection")) and \
                obeyed < len(wanted):
            tool, raw = wanted[obeyed]
            return self._call(request, "evi", len(made), tool, raw)
        pre_made = sum(1 for i in made if i.startswith("evx_"))
        if pre_made < len(inst.pre):
            tool, raw = inst.pre[pre_made]
            return self._call(request, "evx", len(made), tool, raw)
        real_made = sum(1 for i in made if not i.startswith("ev"))
        known = sources(request, inst.told, skip=("ev",))
        if real_made < len(inst.real):
            tool, args = inst.real[real_made]
            filled = call_args(args, known)
            if isinstance(filled, str):
                return report(request, len(made), "blocked", filled)
            if tier == "small" and any(r.mode == "bad_args" and request.role in r.roles
                                       for r in self.rules("weak")):
                broken = dict(list(filled.items())[1:]) if filled else {}
                return self._call(request, "evw", len(made), tool, json.dumps(broken))
            return self._call(request, "call", len(made), tool, json.dumps(filled))
        ids = sorted(set(re.findall(r'"id": ?"([A-Z]+-[0-9A-F]{4,})"', "\n".join(real_out))))
        if inst.step is None:
            return report(request, len(made), "done",
                          "double-checked the records; they match the task.", ids)
        if inst.lie:
            return report(request, len(made), "done", f"Done: {inst.step.goal}", ids)
        status, summary, ids, figures = step_report(inst.step, known, real_out)
        return report(request, len(made), status, summary, ids, figures)

    def _call(self, request: ModelRequest, prefix: str, index: int, tool: str,
              raw: str) -> ProviderReply:
        digest = hashlib.sha256(f"{request.call_key}/{index}".encode()).hexdigest()[:20]
        return ProviderReply(content=None, tool_calls=[
            ToolCall(id=f"{prefix}_{digest}", name=tool, arguments=raw)])


class EvalProvider(ScriptedProvider):
    """The offline provider driven by a ``Script`` that knows which tier it is playing."""

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script

    async def complete(self, model: ModelEntry, request: ModelRequest) -> ProviderReply:
        """The script's answer, else the built-in scripted default."""
        reply = self.script.reply(model.tier, request)
        if reply is None:
            return await super().complete(model, request)
        self.calls += 1
        completion = (reply.content or "") + "".join(c.arguments for c in reply.tool_calls)
        return ProviderReply(content=reply.content, tool_calls=reply.tool_calls,
                             prompt_tokens=self.count_tokens(model, request),
                             completion_tokens=tokens(completion))
