"""One round's decision: the progress ledger's claims checked against the run's record.

The model may say the request is satisfied, that the run cannot proceed, which steps to
run next and which to drop. Foreman believes what the record backs: "satisfied" needs every
plan step done or dropped on evidence; "cannot proceed" needs evidence (a rejected approval,
a denied call, a step reported blocked); a drop needs evidence too (``graphs.drops``); next
steps run only when their dependencies are done; and when nothing the model named can run
while plan steps are ready, those run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphs.dispatch import auto_dispatch, done_ids, ready_steps, resolve, unsettled
from graphs.drops import apply_drops
from graphs.ledger import ProgressLedgerOut
from graphs.state import NextStep, StepResult, TaskLedger
from graphs.views import status_of


@dataclass
class Round:
    """What a round does, and what the manager is told about it."""

    steps: list[NextStep] = field(default_factory=list)
    ledger: TaskLedger | None = None  # set when the plan changed (steps added or dropped)
    satisfied: bool = False
    cannot_proceed: bool = False
    stalled: bool = False
    why_stalled: str = ""
    by_foreman: bool = False
    notes: list[str] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def blocking_evidence(results: list[StepResult]) -> list[str]:
    """What in the record shows the work is blocked: steps reported blocked or waiting for
    input, calls the policy denied or an approver rejected."""
    done = done_ids(results)
    open_ = [r for r in results if r["step_id"] not in done]  # a later success clears it
    found = [f"{r['agent']} reported step {r['step_id']} {status_of(r)}" for r in open_
             if status_of(r) in {"blocked", "needs_input"}]
    found += [f"{t['name']} was {t['refused']} ({r['agent']}, step {r['step_id']})"
              for r in open_ for t in r["tools"] if t.get("refused") in {"denied", "rejected"}]
    return found


def decide(parsed: ProgressLedgerOut | None, ledger: TaskLedger, results: list[StepResult],
           *, since: int, agents: list[str], task: str, limit: int,
           looping: bool) -> Round:
    """The round ``parsed`` (None: unusable) asks for, as far as the record allows."""
    out = Round()
    plan = list(ledger["plan"])
    if parsed is not None and parsed.drop_steps:
        drops = apply_drops(plan, parsed.drop_steps, results, parsed.next_steps)
        plan = drops.plan
        out.notes += drops.notes
        out.events += drops.events
    chosen = resolve(parsed.next_steps if parsed else [], plan, agents, results, limit)
    out.notes += chosen.notes
    out.events += chosen.events
    plan = [*plan, *chosen.added]
    if plan != ledger["plan"]:
        added = [f"step {s['id']} ({s['agent']}) added: {s['goal'][:120]}" for s in chosen.added]
        out.ledger = TaskLedger(facts=ledger["facts"], plan=plan,
                                changes=[*ledger.get("changes", []), *added])
    open_ids = unsettled(plan, results)
    ready = ready_steps(plan, results, since)
    out.satisfied = parsed is not None and parsed.is_request_satisfied.answer
    if out.satisfied and open_ids:
        out.satisfied = False
        claim = (f"the request was claimed satisfied, but plan step(s) {', '.join(open_ids)} "
                 "are neither done nor dropped on evidence")
        out.notes.append(claim)
        out.events.append(("claim_rejected", {"claim": "is_request_satisfied",
                                              "reason": claim, "open_steps": open_ids}))
    out.cannot_proceed = parsed is not None and parsed.cannot_proceed.answer
    evidence = blocking_evidence(results)
    if out.cannot_proceed and not evidence:
        out.cannot_proceed = False
        assert parsed is not None
        claim = (f"cannot_proceed was claimed ({parsed.cannot_proceed.reason or 'no reason'}), "
                 "but nothing in the record blocks the run: no approval was rejected, no "
                 "call denied, no step reported blocked"
                 + (f"; ready step(s): {', '.join(s['id'] for s in ready)}" if ready else ""))
        out.notes.append(claim)
        out.events.append(("claim_rejected", {"claim": "cannot_proceed", "reason": claim,
                                              "ready_steps": [s["id"] for s in ready]}))
    elif out.cannot_proceed:
        out.notes.append(f"cannot proceed: {parsed.cannot_proceed.reason if parsed else ''} "
                         f"(evidence: {'; '.join(evidence[-3:])})")
    out.steps = chosen.steps
    if not out.satisfied and not out.cannot_proceed and not out.steps and ready:
        auto = auto_dispatch(ready, task, limit)
        out.steps, out.by_foreman = auto.steps, True
        out.notes += auto.notes
        out.events += auto.events
    why = ("the progress ledger was unusable" if parsed is None
           else "the last round repeated an earlier step" if looping
           else parsed.is_in_loop.reason or "in a loop" if parsed.is_in_loop.answer
           else parsed.is_progress_being_made.reason or "no progress"
           if not parsed.is_progress_being_made.answer
           else "" if out.satisfied or out.steps or out.cannot_proceed
           else "no step could run (waiting on dependencies)" if chosen.deferred
           else "no usable next step was proposed")
    out.stalled, out.why_stalled = bool(why), why
    return out
