"""The scripted manager: plan, progress, verification and final answer, read from the prompt.

It knows a task through its playbook but states nothing the run's record does not show: an
instruction is filled from the figures earlier steps reported, the verifier rejects a done
step whose report cites no record of what it should have written, and the final answer is
built from the step results it is given.
"""

from __future__ import annotations

import json
import re
from typing import Any

from app.llm.playbook import Playbook, Step, for_task
from app.llm.references import Sources, Unresolved, fill, resolve, step_figures
from graphs.views import parse_result_lines, parse_status_lines

OFFLINE_NOTE = (
    "Foreman ran offline with its built-in scripted models, which only know the bundled demo tasks"
)
NOT_TOLD = "I was not told"  # a specialist missing a figure no report gave: retrying won't help
_FLAGGED = re.compile(r"missing: (S\w+) \(")
_ID = re.compile(r"\b([A-Z]+)-[0-9A-F]{4,}\b")


def tag(text: str, name: str) -> str | None:
    """Contents of ``<name>...</name>`` (or ``<data source="name">``) in a prompt."""
    m = re.search(rf"<{name}>\n?(.*?)\n?</{name}>", text, re.DOTALL)
    if m is None:
        m = re.search(rf'<data source="{name}">\n?(.*?)\n?</data>', text, re.DOTALL)
    return m.group(1).strip() if m else None


def json_tag(text: str, name: str) -> Any:
    """The JSON inside a tag of the prompt, or None."""
    raw = tag(text, name)
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None


def task_of(prompt: str) -> str:
    """The request the prompt is about."""
    return tag(prompt, "task") or ""


def is_done(entry: dict[str, Any]) -> bool:
    """Whether a step result (its ``status``) or a plan-status entry (its ``state``) is done."""
    return "done" in (entry.get("status"), entry.get("state"))


def plan_rows(prompt: str) -> list[dict[str, Any]]:
    """The plan status the prompt shows, a dict a step."""
    return parse_status_lines(tag(prompt, "plan_status") or "")


def result_rows(prompt: str) -> list[dict[str, Any]]:
    """The step results the prompt shows: the final prompt's JSON records, else the lines of
    the progress, verify and replan prompts."""
    found = json_tag(prompt, "step_results")
    if isinstance(found, list):
        return [r for r in found if isinstance(r, dict)]
    return parse_result_lines(tag(prompt, "step_results") or "")


def instruction_for(step: Step, results: list[dict[str, Any]]) -> str:
    """The step's instruction, filled from the figures earlier steps reported."""
    return fill(step.instruction, Sources(steps=step_figures(results)))


def lacking(step: Step, result: dict[str, Any] | None) -> list[str]:
    """Record prefixes the step should have written that its latest done report does not cite."""
    if result is None:
        return []
    text = f"{result.get('summary', '')} {json.dumps(result.get('reported') or {})}"
    if "shadow mode:" in text.lower():
        return []  # a shadow run writes nothing by design; its report says what it would have
    cited = set(_ID.findall(text))
    return [p for p in step.produces if p not in cited]


def _words(text: str) -> str:
    return " ".join(text.split())


def known_step(book: Playbook | None, planned: dict[str, Any],
               same_goal: bool = False) -> Step | None:
    """The playbook's step for a plan step: same id and agent (a step added under a free id
    for another agent is not the playbook's), and with ``same_goal`` the same goal too."""
    step = book.step(str(planned.get("id"))) if book else None
    if step is None or step.agent != planned.get("agent"):
        return None
    if same_goal and _words(step.goal) != _words(str(planned.get("goal", ""))):
        return None
    return step


def _latest_done(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(r["step_id"]): r for r in results
            if is_done(r)}


def to_redo(prompt: str, book: Playbook) -> list[Step]:
    """Steps the verifier flagged whose latest report still cites no record of their write."""
    latest = _latest_done(result_rows(prompt))
    flagged = dict.fromkeys(_FLAGGED.findall(prompt))
    return [s for sid in flagged if (s := book.step(sid)) is not None
            and lacking(s, latest.get(sid))]


def _generic_plan(task: str, agents: list[str]) -> dict[str, Any]:
    return {
        "facts": {"given": [task], "to_look_up": [], "to_derive": [],
                  "guesses": ["offline models cannot act on requests they do not know"]},
        "plan": [{"id": "S1", "agent": agents[0] if agents else "researcher",
                  "goal": "Gather what is known about the request", "depends_on": []}],
    }


def _agents_in(prompt: str) -> list[str]:
    m = re.search(r"one of: ([^>]+)>", prompt) or re.search(r"agents: ([^\n]+)\.", prompt)
    return [a.strip() for a in m.group(1).split(",")] if m else []


def plan(prompt: str, book: Playbook | None = None) -> dict[str, Any]:
    """Task ledger for the plan and replan prompts: steps already done are left out, unless
    the verifier said their record is missing."""
    task = task_of(prompt)
    book = book or for_task(task)
    if book is None:
        return _generic_plan(task, _agents_in(prompt))
    done = {str(r["step_id"]) for r in result_rows(prompt) if is_done(r)}
    redo = {s.id for s in to_redo(prompt, book)}
    skip = done - redo
    return {"facts": book.facts, "plan": [
        {"id": s.id, "agent": s.agent, "goal": s.goal,
         "depends_on": [d for d in s.depends_on if d not in skip]}
        for s in book.steps if s.id not in skip]}


def ledger(satisfied: bool, steps: list[dict[str, Any]], cannot: str = "",
           progress: bool | None = None) -> dict[str, Any]:
    """A progress ledger."""
    moving = bool(steps) or satisfied if progress is None else progress
    out: dict[str, Any] = {
        "is_request_satisfied": {"answer": satisfied, "reason": "plan status"},
        "is_in_loop": {"answer": False, "reason": "each round advances the plan"},
        "is_progress_being_made": {"answer": moving,
                                   "reason": "steps are ready" if steps else "nothing ready"},
        "next_steps": steps,
    }
    if cannot:
        out["cannot_proceed"] = {"answer": True, "reason": cannot}
        out["is_progress_being_made"] = {"answer": False, "reason": "blocked"}
    return out


def next_steps(prompt: str, book: Playbook | None) -> tuple[list[dict[str, Any]], bool]:
    """The steps to run now (each ready one, or those the verifier found without their
    record) with instructions filled from the record; and whether all are done."""
    status = plan_rows(prompt)
    results = result_rows(prompt)
    done = {s["id"] for s in status if is_done(s)}
    redo = to_redo(prompt, book) if book else []
    if redo:
        return [{"step_id": s.id, "agent": s.agent, "instruction": instruction_for(s, results),
                 "reason": "the verifier found no record of it"} for s in redo], False
    ready = [s for s in status if not is_done(s) and set(s.get("depends_on", [])) <= done]
    steps = []
    for s in ready:
        known = known_step(book, s)
        instruction = (instruction_for(known, results) if known else
                       f"Gather what is known about this request: {task_of(prompt)}")
        steps.append({"step_id": s["id"], "agent": s["agent"], "instruction": instruction,
                      "reason": "its dependencies are done"})
    return steps, bool(status) and not ready and len(done) == len(status)


def refusals(prompt: str) -> dict[str, str]:
    """Steps a human refused, or no offline model can do: retrying would fail again."""
    results = result_rows(prompt)
    refused = {r["step_id"]: "the approver rejected step" for r in results
               if not is_done(r) and "rejected by the approver" in r.get("summary", "")}
    refused.update({r["step_id"]: "offline models cannot do step" for r in results
                    if not is_done(r) and OFFLINE_NOTE in r.get("summary", "")})
    refused.update({r["step_id"]: "no report gave the figures needed by step" for r in results
                    if not is_done(r) and NOT_TOLD in r.get("summary", "")})
    return refused


def progress(prompt: str, book: Playbook | None = None) -> dict[str, Any]:
    """Progress ledger: satisfied when all steps are done, else every ready step in parallel."""
    book = book or for_task(task_of(prompt))
    steps, satisfied = next_steps(prompt, book)
    refused = refusals(prompt)
    blocked = [s for s in steps if s["step_id"] in refused]
    if blocked:
        sid = blocked[0]["step_id"]
        return ledger(False, [], cannot=f"{refused[sid]} {sid}")
    return ledger(satisfied, steps)


def verify(prompt: str, book: Playbook | None = None) -> dict[str, Any]:
    """Verdict: every step done, and each write step's report cites the record it wrote."""
    book = book or for_task(task_of(prompt))
    status = plan_rows(prompt)
    undone = [s["id"] for s in status if not is_done(s) and s.get("state") != "dropped"]
    if not status or undone:
        return {"verified": False, "reason": "some steps are not done", "missing": undone}
    latest = _latest_done(result_rows(prompt))
    missing = []
    for s in status:
        step = known_step(book, s, same_goal=True) if s.get("state") != "dropped" else None
        if step is None:
            continue  # not a playbook step: nothing known of what it should write
        gaps = lacking(step, latest.get(s["id"]))
        missing += [f"{s['id']} ({s['agent']}): reported done, but its report cites no "
                    f"{p}- record" for p in gaps]
    if missing:
        return {"verified": False, "missing": missing,
                "reason": "a step reported done shows no record of what it should have written"}
    return {"verified": True, "reason": "all plan steps done, with the records they wrote",
            "missing": []}


def final(prompt: str, book: Playbook | None = None) -> str:
    """Final answer from the step results given: the playbook's outcome filled from their
    figures when the run was satisfied, each step's report, or an honest offline note."""
    book = book or for_task(task_of(prompt))
    reason = re.search(r"How the run ended: ([^.\n]+)", prompt)
    ended = reason.group(1) if reason else "satisfied"
    results = result_rows(prompt)
    if book is None:
        return (f"{OFFLINE_NOTE}, and this request is not one of them, so nothing was "
                "looked up or changed. Configure a model provider key to run it for real.")
    lines = []
    if ended == "satisfied":
        try:
            lines.append(str(resolve(book.final, Sources(steps=step_figures(results),
                                                         text=json.dumps(results)))))
        except Unresolved as e:
            lines.append(f"The steps reported done, but their reports do not show {e}. "
                         "What was done:")
    else:
        lines.append(f"The run stopped before finishing ({ended}). What was done:")
    lines.extend(f"- {r['agent']} ({r['step_id']}): {r['summary']}" for r in results)
    return "\n".join(lines)
