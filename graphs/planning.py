"""A plan the run can use: parsed, checked, sent back once with its errors, then repaired."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import prompts
from graphs.errors import ModelCallError
from graphs.ledger import TaskLedgerOut
from graphs.plan_check import check_plan
from graphs.ports import Message, ModelRouter
from graphs.state import TaskLedger
from graphs.structured import ask_structured
from graphs.team import TeamSpec
from graphs.views import prompt_json


@dataclass
class CheckedPlan:
    """The ledger to use, with what was repaired and what was sent back."""

    ledger: TaskLedger
    changes: list[str] = field(default_factory=list)
    sent_back: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def checked_plan(router: ModelRouter, *, role: str, messages: list[Message],
                       ledger: TaskLedger, agents: list[str], call_key: str,
                       signals: Mapping[str, Any]) -> CheckedPlan | None:
    """Check ``ledger``; on errors ask the model once to fix them, then repair the rest.

    None when nothing usable is left (the caller falls back to a plan of its own). A failed
    fix call is noted, not raised: the first plan is repaired instead.
    """
    first = check_plan(ledger, agents)
    if not first.errors:
        return CheckedPlan(first.ledger, first.changes)
    out = CheckedPlan(first.ledger, sent_back=first.errors,
                      notes=[f"plan sent back once: {'; '.join(first.errors)}"])
    fix = [*messages, {"role": "user", "content": prompts.render(
        "plan_fix.j2", errors=first.errors, ledger_json=prompt_json(ledger),
        agent_names=agents)}]
    fixed: TaskLedgerOut | None = None
    try:
        fixed, problems = await ask_structured(router, role=role, messages=fix,
                                               schema=TaskLedgerOut,
                                               call_key=f"{call_key}/fix",
                                               signals={**signals, "failure": "plan_invalid"})
        out.notes.extend(problems)
    except ModelCallError as e:
        out.notes.append(f"the plan could not be sent back ({e})")
    candidates = [fixed.to_state()] if fixed is not None else []
    for candidate in [*candidates, ledger]:
        again = check_plan(candidate, agents, force=True)
        if not again.errors:
            out.ledger, out.changes = again.ledger, again.changes
            if candidate is ledger:
                out.notes.append("the corrected plan was unusable; the first one was repaired")
            return out
    return None


def fallback_ledger(team: TeamSpec, task: str) -> TaskLedger:
    """Used when planning output is unusable: one step per agent, in configured order."""
    plan = [{"id": f"S{i + 1}", "agent": a.name, "goal": f"Contribute to: {task}",
             "depends_on": []} for i, a in enumerate(team.agents)]
    return {"facts": {"given": [task], "to_look_up": [], "to_derive": [], "guesses": []},
            "plan": plan}  # type: ignore[typeddict-item]


async def usable_plan(router: ModelRouter, messages: list[Message],
                      parsed: TaskLedgerOut | None, agents: list[str], key: str,
                      signals: Mapping[str, Any]) -> tuple[TaskLedger | None, dict[str, Any]]:
    """The checked ledger (None: nothing usable) and what the plan event should say."""
    if parsed is None:
        return None, {}
    checked = await checked_plan(router, role="manager.plan", messages=messages,
                                 ledger=parsed.to_state(), agents=agents, call_key=key,
                                 signals=signals)
    if checked is None:
        return None, {"sent_back": ["no usable step was left after repair"]}
    return checked.ledger, {"changes": checked.changes, "sent_back": checked.sent_back,
                            "notes": checked.notes}
