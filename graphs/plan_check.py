"""Plans are checked before use: ids, owners, goals, dependencies and cycles.

A model writes the plan; Foreman decides what it may run. ``check_plan`` repairs what has
one obvious reading (a misspelt agent, a duplicate id, a dependency spelt ``"step 1"``, a
phrase that names no step) and reports the rest as errors for the model to fix once; with
``force`` it repairs those too (drops the step or the dependency) and says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from graphs.ledger import match_agent
from graphs.state import PlanStep, TaskLedger

_ID_SHAPE = re.compile(r"^(?:step)?\s*[#:]?\s*([a-z]*)\s*[-_ ]?\s*0*(\d+)\b", re.IGNORECASE)


def normalise_id(raw: object, ids: Iterable[str]) -> str | None:
    """The plan id a model's spelling names ("S1", "s1", "1", "Step 1", "S-1", "S01",
    "S1: look up…", "after S1"), or None when it names none or is ambiguous."""
    known = list(ids)
    text = str(raw if raw is not None else "").strip()
    if not text:
        return None
    if text in known:
        return text
    lowered = {i.lower(): i for i in known}
    if text.lower() in lowered:
        return lowered[text.lower()]
    m = _ID_SHAPE.match(text)
    if m:
        prefix, number = m.group(1), m.group(2)
        pattern = rf"{re.escape(prefix) if prefix else '[a-z]*'}0*{number}"
        found = [i for i in known if re.fullmatch(pattern, i, re.IGNORECASE)]
        if len(found) == 1:
            return found[0]
    named = [i for i in known if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", text,
                                           re.IGNORECASE)]
    return named[0] if len(named) == 1 else None


def fresh_id(taken: Iterable[str]) -> str:
    """The first ``S<n>`` not in ``taken``."""
    used = set(taken)
    n = 1
    while f"S{n}" in used:
        n += 1
    return f"S{n}"


@dataclass
class PlanCheck:
    """A checked plan: what was repaired, and what still needs the model."""

    ledger: TaskLedger
    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _cycles(plan: list[PlanStep]) -> list[list[str]]:
    """Each dependency cycle once, as the ids on it."""
    deps = {s["id"]: s["depends_on"] for s in plan}
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 finished

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for d in deps.get(node, []):
            if state.get(d) == 1:
                cycle = path[path.index(d):]
                if sorted(cycle) not in [sorted(c) for c in found]:
                    found.append(cycle)
            elif d not in state:
                visit(d, [*path, d])
        state[node] = 2

    for s in plan:
        if s["id"] not in state:
            visit(s["id"], [s["id"]])
    return found


def check_plan(ledger: TaskLedger, agents: list[str], *, force: bool = False) -> PlanCheck:
    """Validate ``ledger``'s plan against the team; see the module docstring."""
    changes: list[str] = []
    errors: list[str] = []
    kept: list[PlanStep] = []
    for raw in ledger["plan"]:
        step = PlanStep(id=str(raw.get("id") or "").strip(), agent=raw["agent"],
                        goal=str(raw.get("goal") or "").strip(),
                        depends_on=[str(d) for d in raw.get("depends_on") or []])
        label = step["id"] or "(no id)"
        agent = match_agent(step["agent"], agents)
        if agent is None:
            if force:
                changes.append(f"step {label} dropped: unknown agent {step['agent']!r}")
                continue
            errors.append(f"step {label}: unknown agent {step['agent']!r}; "
                          f"valid agents: {', '.join(agents)}")
        elif agent != step["agent"]:
            changes.append(f"step {label}: agent {step['agent']!r} read as {agent!r}")
            step["agent"] = agent
        if not step["goal"]:
            if force:
                changes.append(f"step {label} dropped: it has no goal")
                continue
            errors.append(f"step {label} has an empty goal")
        taken = [s["id"] for s in kept]
        same = next((s for s in kept if s["id"] == step["id"]), None)
        if same is not None and (same["agent"], same["goal"]) == (step["agent"], step["goal"]):
            changes.append(f"step {label} dropped: a repeat of the step before it")
            continue
        if not step["id"] or same is not None:
            new = fresh_id([*taken, *(str(s.get("id") or "") for s in ledger["plan"])])
            changes.append(f"step {label} ({step['agent']}) renumbered {new}: "
                           + ("it had no id" if not step["id"] else "its id was taken"))
            step["id"] = new
        kept.append(step)
    ids = [s["id"] for s in kept]
    for step in kept:
        deps: list[str] = []
        for raw_dep in step["depends_on"]:
            dep = normalise_id(raw_dep, ids)
            if dep is None or dep == step["id"]:
                why = "is the step itself" if dep else "names no step"
                changes.append(f"step {step['id']}: dependency {raw_dep!r} dropped ({why})")
                continue
            if dep != raw_dep:
                changes.append(f"step {step['id']}: dependency {raw_dep!r} read as {dep!r}")
            if dep not in deps:
                deps.append(dep)
        step["depends_on"] = deps
    for cycle in _cycles(kept):
        if not force:
            errors.append(f"steps {' -> '.join([*cycle, cycle[0]])} depend on each other "
                          "in a cycle")
            continue
        order = {s["id"]: i for i, s in enumerate(kept)}
        for step in kept:
            if step["id"] in cycle:
                later = [d for d in step["depends_on"]
                         if d in cycle and order[d] >= order[step["id"]]]
                for d in later:
                    step["depends_on"].remove(d)
                    changes.append(f"step {step['id']}: dependency {d!r} dropped "
                                   "(it closed a cycle)")
    if not kept and not errors:
        errors.append("the plan has no usable step")
    checked = TaskLedger(facts=ledger["facts"], plan=kept,
                         changes=[*ledger.get("changes", []), *changes])
    return PlanCheck(checked, changes, errors)
