"""Compact views of the state for prompts: flat in size however long the run goes."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, cast

from graphs.state import StepResult, TaskLedger, ToolTrace


def dumps(value: Any) -> str:
    """Compact, stable JSON for prompts and hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prompt_json(value: Any) -> str:
    """JSON for embedding in a prompt: ``</`` is written ``<\\/`` (still valid JSON), so no
    text inside can close the block it sits in."""
    return dumps(value).replace("</", "<\\/")


def sha256(value: Any) -> str:
    """Hash of a JSON-shaped value."""
    return hashlib.sha256(dumps(value).encode()).hexdigest()


def data_block(source: str, text: str) -> str:
    """Wrap untrusted text as labelled data; a forged closing tag cannot escape the block."""
    safe = text.replace("</data", "<\\/data")
    return f'<data source="{source}">\n{safe}\n</data>'


def done_steps(results: list[StepResult]) -> set[str]:
    """Plan step ids some agent reported as done."""
    return {r["step_id"] for r in results if r["ok"]}


def status_of(result: StepResult) -> str:
    """done | blocked | needs_input | unclear (results stored before statuses: by ``ok``)."""
    return result.get("status") or ("done" if result["ok"] else "blocked")


def plan_status(ledger: TaskLedger, results: list[StepResult]) -> list[dict[str, Any]]:
    """The plan with the state of each step: done once any result of it was, else dropped,
    else its latest result's status, else not started."""
    done = done_steps(results)
    latest = {r["step_id"]: status_of(r) for r in results}
    return [{**step, "state": "done" if step["id"] in done else "dropped" if step.get("dropped")
             else latest.get(step["id"], "not started")} for step in ledger["plan"]]


def ledger_facts(ledger: TaskLedger, task: str = "") -> dict[str, Any]:
    """The task ledger without its plan (which the plan status shows, with each step's
    state), and with what Foreman changed in it when it changed anything. Empty kinds of
    fact are left out, and so is a given fact that only repeats ``task`` (which the prompt
    shows above it)."""
    changes = ledger.get("changes") or []
    same = " ".join(task.split()).casefold()
    kinds = cast(dict[str, list[str]], ledger["facts"])
    facts = {kind: kept for kind, items in kinds.items()
             if (kept := [f for f in items if kind != "given" or not same
                          or " ".join(str(f).split()).casefold() != same])}
    return {"facts": facts, **({"changes": changes} if changes else {})}


# A step's line in a prompt: fields Foreman writes itself, then the model-written text as a
# JSON string, so no newline or quote in it can start a line of its own. A step id is the
# planner's: written as it is when it is a plain token, else as a JSON string too.
_ID = r'"(?:[^"\\]|\\.)*"|[\w.-]+'
_STATUS_LINE = re.compile(rf'^- (?P<id>{_ID}) \((?P<agent>[^,()]+), (?P<state>[^,()]+)'
                          rf'(?:, after (?P<after>.*?))?\): (?P<goal>".*")$')
_RESULT_LINE = re.compile(rf'^- round (?P<round>\d+), (?P<step_id>{_ID}) \((?P<agent>[^,()]+), '
                          r'(?P<status>[^,()]+)\): (?P<summary>".*")$')
_PLAIN_ID = re.compile(r"[\w.-]+")
# Line breaks to str.splitlines() that JSON leaves as they are (it escapes control characters).
_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


def _quoted(text: str) -> str:
    return prompt_json(text).translate(_BREAKS)


def _id(step_id: str) -> str:
    return step_id if _PLAIN_ID.fullmatch(step_id) else _quoted(step_id)


def _id_of(written: str) -> str:
    return str(json.loads(written)) if written.startswith('"') else written


def status_lines(status: Iterable[dict[str, Any]]) -> str:
    """The plan status, a step a line: ``- S2 (billing, not started, after S1): "goal"``."""
    return "\n".join(
        f"- {_id(s['id'])} ({s['agent']}, {s['state']}"
        + (f", after {', '.join(map(_id, s['depends_on']))}" if s.get("depends_on") else "")
        + f"): {_quoted(s['goal'])}" for s in status)


def result_lines(results: Iterable[dict[str, Any]]) -> str:
    """Step results, one a line: ``- round 3, S1 (researcher, done): "summary"``."""
    return "\n".join(f"- round {r['round']}, {_id(r['step_id'])} ({r['agent']}, {r['status']}): "
                      f"{_quoted(r['summary'])}" for r in results)


def parse_status_lines(text: str) -> list[dict[str, Any]]:
    """The entries :func:`status_lines` wrote (lines of another shape are skipped)."""
    return [{"id": _id_of(m["id"]), "agent": m["agent"], "state": m["state"],
             "depends_on": [_id_of(d) for d in re.findall(_ID, m["after"] or "")],
             "goal": json.loads(m["goal"])}
            for m in filter(None, map(_STATUS_LINE.match, text.splitlines()))]


def parse_result_lines(text: str) -> list[dict[str, Any]]:
    """The entries :func:`result_lines` wrote (lines of another shape are skipped)."""
    return [{"round": int(m["round"]), "step_id": _id_of(m["step_id"]), "agent": m["agent"],
             "status": m["status"], "summary": json.loads(m["summary"])}
            for m in filter(None, map(_RESULT_LINE.match, text.splitlines()))]


def recent_results(
    results: list[StepResult], keep: int, chars: int
) -> tuple[list[dict[str, Any]], int]:
    """The last ``keep`` results with summaries cut to ``chars``; and how many were left out."""
    recent = results[-keep:] if keep > 0 else []
    view = [
        {
            "round": r["round"],
            "step_id": r["step_id"],
            "agent": r["agent"],
            "status": status_of(r),
            "summary": r["summary"][:chars],
        }
        for r in recent
    ]
    return view, len(results) - len(recent)


def step_records(results: list[StepResult], keep: int, chars: int) -> list[dict[str, Any]]:
    """What the record holds of each step: its report and the tool calls it made."""
    return [{"round": r["round"], "step_id": r["step_id"], "agent": r["agent"],
             "status": status_of(r), "summary": r["summary"][:chars],
             "reported": {k: v for k, v in (r.get("report") or {}).items()
                          if k in {"ids", "figures", "facts"} and v},
             "tool_calls": [{"tool": t["name"], "ok": t["ok"],
                             **({"refused": t["refused"]} if t.get("refused") else {})}
                            for t in r["tools"]]}
            for r in results[-keep:]]


ENDINGS = {
    "satisfied": "the request was completed and verified",
    "blocked": "the remaining work was blocked",
    "stalled": "no progress was being made, even after replanning",
    "unverified": "the verifier did not accept the result",
    "round_limit": "the run reached its round limit",
    "time_limit": "the run reached its time limit",
    "budget_exhausted": "the run's budget was used up",
    "model_unavailable": "no model could be reached",
    "plan_rejected": "the reviewer rejected the plan",
    "approval_expired": "an approval expired before anyone decided it",
}


def calls_that_ran(results: list[StepResult],
                   keep: Callable[[StepResult, ToolTrace], bool] | None = None) -> list[str]:
    """Each tool call of the record that ran (succeeded, not refused), as ``name (agent,
    step)``; with ``keep``, only the calls it keeps."""
    return [f"{t['name']} ({r['agent']}, {r['step_id']})" for r in results for t in r["tools"]
            if t["ok"] and not t.get("refused") and (keep is None or keep(r, t))]


def nothing_done_answer(task: str, stop_reason: str, results: list[StepResult],
                        notes: list[str]) -> str:
    """The final answer of a run in which no step completed, written without a model: it
    states no fact about the world, only what the record shows."""
    ran = calls_that_ran(results)
    changed = (f"Tool calls ran all the same, and any write among them may have changed "
               f"records: {', '.join(ran)}. No" if ran else "Nothing was changed, and no")
    lines = [f"Nothing was done: no step of the plan was completed (stop reason "
             f"{stop_reason}: {ENDINGS.get(stop_reason, stop_reason)}). {changed} fact "
             "about the request was established."]
    if results:
        lines.append("What the agents reported:")
        lines.extend(f"- {r['agent']} ({r['step_id']}, {status_of(r)}): {r['summary'][:300]}"
                     for r in results[-6:])
    else:
        lines.append("No agent ran.")
    lines.extend(f"Note: {n}" for n in notes[-3:])
    lines.append(f"Request: {task}")
    return "\n".join(lines)


def brief(ledger: TaskLedger, results: list[StepResult], keep: int, chars: int) -> str:
    """What a specialist is told of the run: given facts and the latest result of each of the
    ``keep`` steps reported on last (a step's newer report supersedes its older ones)."""
    latest: dict[str, StepResult] = {}
    for r in results:
        latest.pop(r["step_id"], None)
        latest[r["step_id"]] = r
    view, _ = recent_results(list(latest.values()), keep, chars)
    given = f"Given: {prompt_json(ledger['facts']['given'])}"
    return f"{given}\nLatest step results:\n{result_lines(view)}" if view else given


def fingerprint(agent: str, instruction: str, tools: list[ToolTrace]) -> str:
    """Identity of a step's behaviour, for mechanical loop detection."""
    calls = [(t["name"], t["args_sha256"], t["result_sha256"]) for t in tools]
    return sha256([agent, " ".join(instruction.lower().split()), calls])


def fallback_answer(task: str, stop_reason: str, results: list[StepResult]) -> str:
    """A plain, honest final answer built without a model, for when no model can be reached."""
    lines = [f"The run ended ({stop_reason}) before a final answer could be written by a model."]
    done = [r for r in results if r["ok"]]
    if done:
        lines.append("Completed steps:")
        lines.extend(f"- {r['agent']}: {r['summary'][:300]}" for r in done)
    else:
        lines.append("No step was completed.")
    lines.append(f"Request: {task}")
    return "\n".join(lines)
