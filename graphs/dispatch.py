"""Which steps run this round: the model proposes, Foreman disposes.

Step ids are Foreman's: a proposed step is matched to the plan by its id when that id is the
plan's and owned by the proposed agent, else by agent and instruction, else added to the plan
as a new step; a step whose dependencies are not done is held back; when nothing the model
named can run, the plan's ready steps run in plan order.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from graphs.ledger import NextStepOut, match_agent
from graphs.plan_check import fresh_id, normalise_id
from graphs.state import NextStep, PlanStep, StepResult

AUTO_REASON = "ready step, model named none"


@dataclass
class Dispatch:
    """The outcome of resolving one progress ledger's next steps."""

    steps: list[NextStep] = field(default_factory=list)
    added: list[PlanStep] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    deferred: int = 0


def done_ids(results: list[StepResult]) -> set[str]:
    """Step ids some agent reported done."""
    return {r["step_id"] for r in results if r["ok"]}


def failed_ids(results: list[StepResult], since: int) -> set[str]:
    """Step ids of the current plan whose last attempt did not end done."""
    last: dict[str, bool] = {}
    for r in results:
        if r["round"] > since:
            last[r["step_id"]] = r["ok"]
    return {k for k, ok in last.items() if not ok}


def waiting_on(step: PlanStep, done: set[str]) -> list[str]:
    """The dependencies of ``step`` that are not done (a dropped one never is)."""
    return [d for d in step["depends_on"] if d not in done]


def ready_steps(plan: list[PlanStep], results: list[StepResult], since: int) -> list[PlanStep]:
    """Steps not done, not dropped, not failed since the plan was written, with every
    dependency done; in plan order."""
    done = done_ids(results)
    failed = failed_ids(results, since)
    return [s for s in plan if s["id"] not in done and s["id"] not in failed
            and not s.get("dropped") and not waiting_on(s, done)]


def unsettled(plan: list[PlanStep], results: list[StepResult]) -> list[str]:
    """Ids of plan steps neither done nor dropped on evidence (``graphs.drops``): a step
    dropped without it is still open, and a run with one open cannot be satisfied."""
    done = done_ids(results)
    return [s["id"] for s in plan if s["id"] not in done
            and not (s.get("dropped") and s.get("drop_evidence"))]


def _similarity(a: str, b: str) -> float:
    wa, wb = set(a.lower().split()), set(b.lower().split())
    overlap = len(wa & wb) / max(1, min(len(wa), len(wb)))
    return max(overlap, difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio())


def _match(agent: str, instruction: str, plan: list[PlanStep], claimed: set[str],
           done: set[str]) -> PlanStep | None:
    """The plan step of ``agent`` this instruction is about: an open one first."""
    mine = [s for s in plan if s["agent"] == agent and s["id"] not in claimed
            and not s.get("dropped")]
    open_ = [s for s in mine if s["id"] not in done]
    if open_:
        return max(open_, key=lambda s: _similarity(instruction, s["goal"]))
    scored = [(s, _similarity(instruction, s["goal"])) for s in mine]
    best = max(scored, key=lambda p: p[1], default=None)
    return best[0] if best is not None and best[1] >= 0.5 else None


def auto_instruction(step: PlanStep, task: str) -> str:
    """The instruction Foreman gives for a ready step nobody named."""
    return f"{step['goal']} (plan step {step['id']}; the request: {task})"


def resolve(proposed: list[NextStepOut], plan: list[PlanStep], agents: list[str],
            results: list[StepResult], limit: int) -> Dispatch:
    """Map proposed next steps onto the plan and hold back those that may not run yet."""
    out = Dispatch()
    done = done_ids(results)
    by_id = {s["id"]: s for s in plan}
    claimed: set[str] = set()
    for step in proposed:
        sid = normalise_id(step.step_id, list(by_id))
        agent = match_agent(step.agent, agents) if step.agent.strip() else (
            by_id[sid]["agent"] if sid else None)
        if agent is None:
            out.notes.append(f"unknown agent {step.agent!r} proposed; valid agents: {agents}")
            continue
        if step.agent.strip() and agent != step.agent:
            out.notes.append(f"agent {step.agent!r} read as {agent!r}")
        target = by_id.get(sid) if sid else None
        how = "id"
        if target is not None and target["agent"] != agent:
            out.notes.append(f"step id {step.step_id!r} belongs to {target['agent']}, not "
                             f"{agent}; matched by agent and instruction instead")
            target = None
        if target is None:
            target = _match(agent, step.instruction, plan, claimed, done)
            how = "agent and instruction"
        if target is None:
            new = PlanStep(id=fresh_id([*by_id, *(s["id"] for s in out.added)]), agent=agent,
                           goal=step.instruction.strip()[:300], depends_on=[])
            out.added.append(new)
            by_id[new["id"]] = new
            target, how = new, "new"
            out.events.append(("step_added", {"step_id": new["id"], "agent": agent,
                                              "goal": new["goal"],
                                              "proposed_id": step.step_id}))
            out.notes.append(f"{agent}'s step {step.step_id or '(no id)'} matches no plan step; "
                             f"added to the plan as {new['id']}")
        elif target["id"] != step.step_id:
            out.events.append(("step_matched", {"proposed_id": step.step_id,
                                                "step_id": target["id"], "agent": agent,
                                                "by": how}))
            out.notes.append(f"{agent}'s step {step.step_id or '(no id)'} read as plan step "
                             f"{target['id']} (by {how})")
        if target["id"] in claimed:
            out.notes.append(f"step {target['id']} was proposed twice; run once")
            continue
        claimed.add(target["id"])
        blockers = waiting_on(target, done)
        if blockers or target.get("dropped"):
            why = (f"it was dropped ({target.get('dropped')})" if target.get("dropped") else
                   f"it depends on {', '.join(blockers)}, not done yet")
            out.deferred += 1
            out.notes.append(f"step {target['id']} ({agent}) was not dispatched: {why}")
            out.events.append(("step_deferred", {"step_id": target["id"], "agent": agent,
                                                 "waiting_on": blockers, "reason": why}))
            continue
        if len(out.steps) >= limit:
            out.notes.append(f"step {target['id']} deferred: at most {limit} run in parallel")
            continue
        out.steps.append(NextStep(step_id=target["id"], agent=agent,
                                  instruction=step.instruction or target["goal"]))
    return out


def auto_dispatch(ready: list[PlanStep], task: str, limit: int) -> Dispatch:
    """Ready plan steps, in plan order, that Foreman runs because the model named none."""
    out = Dispatch()
    for s in ready[:limit]:
        out.steps.append(NextStep(step_id=s["id"], agent=s["agent"],
                                  instruction=auto_instruction(s, task)))
        out.events.append(("step_dispatched", {"step_id": s["id"], "agent": s["agent"],
                                               "reason": AUTO_REASON}))
    if out.steps:
        ids = ", ".join(s["step_id"] for s in out.steps)
        out.notes.append(f"Foreman dispatched ready step(s) {ids} in plan order: {AUTO_REASON}")
    return out
