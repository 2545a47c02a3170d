"""Dropping a plan step: the manager may give a step up only when the record backs it.

A drop settles a step as surely as doing it, so it needs what a ``cannot_proceed`` needs:
evidence the run holds. A step may be dropped when it is done already; when an attempt of
it ended blocked or waiting for input, or one of its calls was denied or rejected; when two
attempts ended without it done; when a step it depends on was dropped; or when another step
of the same agent, not waiting on it, covers its goal (most of its words): one in the plan,
or one named in the same progress ledger, in its place. Any other drop
is refused: the step stays in the plan, the manager is told why, and a ``claim_rejected``
event records it. A dropped step keeps the evidence it was dropped on; only such a step
counts as settled (see ``graphs.dispatch.unsettled``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from graphs.dispatch import done_ids
from graphs.ledger import DropOut, NextStepOut
from graphs.plan_check import normalise_id
from graphs.state import PlanStep, StepResult
from graphs.views import status_of

COVERS_AT = 0.75  # share of a dropped goal's words another goal must hold to cover it
_WORD = re.compile(r"[a-z0-9][a-z0-9-]*")
GIVE_UP_AFTER = 2  # attempts that ended without the step done


@dataclass
class Drops:
    """The plan after the manager's drops, and what it is told about them."""

    plan: list[PlanStep]
    notes: list[str] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _words(goal: str) -> set[str]:
    """The words that carry a goal: ids, and words of four letters or more."""
    return {w for w in _WORD.findall(goal.lower()) if len(w) >= 4 or any(c.isdigit() for c in w)}


def covers(agent: str, goal: str, step: PlanStep) -> bool:
    """A step of ``agent`` with ``goal`` does ``step``'s work: the same agent, and a goal
    holding most of its words."""
    words = _words(step["goal"])
    return (agent == step["agent"] and bool(words)
            and len(words & _words(goal)) / len(words) >= COVERS_AT)


def drop_evidence(step: PlanStep, plan: list[PlanStep], results: list[StepResult],
                  proposed: list[NextStepOut] | None = None) -> str:
    """What in the record justifies dropping ``step`` ("" when nothing does); ``proposed``
    are the next steps named with the drop (one may be the step added in its place)."""
    sid = step["id"]
    if sid in done_ids(results):
        return "it is done already"
    mine = [r for r in results if r["step_id"] == sid]
    for r in reversed(mine):
        if status_of(r) in {"blocked", "needs_input"}:
            return f"{r['agent']} reported it {status_of(r)} in round {r['round']}"
        refused = [t for t in r["tools"] if t.get("refused") in {"denied", "rejected"}]
        if refused:
            return f"{refused[0]['name']} was {refused[0].get('refused')} in round {r['round']}"
    failed = [r for r in mine if not r["ok"]]
    if len(failed) >= GIVE_UP_AFTER:
        return f"{len(failed)} attempts ended without it done"
    by_id = {s["id"]: s for s in plan}
    gone = [d for d in step["depends_on"] if d in by_id and by_id[d].get("dropped")]
    if gone:
        return f"it depends on dropped step {gone[0]}"
    covering = [s for s in plan if s["id"] != sid and not s.get("dropped")
                and sid not in s["depends_on"]
                and covers(s["agent"], s["goal"], step)]
    if covering:
        return f"step {covering[0]['id']} covers its goal"
    added = [p for p in proposed or [] if p.step_id.strip() != sid
             and covers(p.agent.strip() or step["agent"], p.instruction, step)]
    if added:
        return f"the next step named in its place covers its goal ({added[0].instruction[:80]})"
    return ""


def apply_drops(plan: list[PlanStep], drops: list[DropOut], results: list[StepResult],
                proposed: list[NextStepOut] | None = None) -> Drops:
    """``plan`` with the drops the record justifies applied; the others refused."""
    ids = [s["id"] for s in plan]
    by_id = {s["id"]: s for s in plan}
    out = Drops(plan=plan)
    for d in drops:
        sid = normalise_id(d.step_id, ids)
        if sid is None:
            out.notes.append(f"drop of {d.step_id!r} ignored: it names no plan step")
            continue
        if by_id[sid].get("dropped"):
            continue
        reason = d.reason or "dropped by the manager"
        evidence = drop_evidence(by_id[sid], list(by_id.values()), results, proposed)
        if not evidence:
            claim = (f"drop of step {sid} refused ({reason}): nothing in the record shows it "
                     "cannot or need not be done (no attempt of it was blocked, denied or "
                     "failed twice, and no other step covers its goal); run it, or say why "
                     "it cannot run")
            out.notes.append(claim)
            out.events.append(("claim_rejected", {"claim": "drop_steps", "step_id": sid,
                                                  "reason": claim}))
            continue
        by_id[sid] = PlanStep(**{**by_id[sid], "dropped": reason, "drop_evidence": evidence})
        out.events.append(("step_dropped", {"step_id": sid, "reason": reason,
                                            "evidence": evidence}))
        out.notes.append(f"step {sid} dropped: {reason} (evidence: {evidence})")
    out.plan = [by_id[i] for i in ids]
    return out
