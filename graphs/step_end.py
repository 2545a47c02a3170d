"""How a specialist's step ends: its report, kept only when the step's tool calls back it.

A claimed ``done`` counts only with a successful tool call behind it that involved the ids
the step is about, and never when the reply imitates tool output; a reply without a report
tool call is read as a report written as JSON, or as prose, conservatively.
"""

from __future__ import annotations

from typing import Any

from graphs.report import imitates_data, neutralise, read_prose, report_in_text, summary_of
from graphs.state import SpecialistState


def _succeeded(state: SpecialistState) -> bool:
    return any(t["ok"] for t in state.get("tools_used", []))


def ungrounded(state: SpecialistState) -> str:
    """Why this step's successful calls do not back a ``done`` ("" when they do): the step
    names ids, and no successful call's arguments or result involved any of them."""
    about = state.get("about") or []
    used = [t for t in state.get("tools_used", []) if t["ok"]]
    if not about or not used or any(t.get("about") for t in used):
        return ""
    calls = ", ".join(dict.fromkeys(t["name"] for t in used))
    return (f"none of this step's successful tool calls ({calls}) involved "
            f"{' or '.join(about)}, the id{'s' if len(about) > 1 else ''} it is about")


def step_end(state: SpecialistState, status: str, summary: str,
            report: dict[str, Any], content: str) -> dict[str, Any]:
    """The step's end: a claimed ``done`` counts only with a successful tool call behind it,
    and never when the reply imitates tool output."""
    summary = neutralise(summary.strip()) or "(no report)"
    if status == "done" and imitates_data(content):
        status, summary = "unclear", ("NOT VERIFIED: the reply imitates tool output (Foreman's "
                                      f"data markup) instead of calling a tool. {summary}")
    elif status == "done" and not _succeeded(state):
        status, summary = "unclear", ("NOT VERIFIED: reported done, but no tool call of "
                                      f"this step succeeded. {summary}")
    elif status == "done" and (why := ungrounded(state)):
        status, summary = "unclear", f"NOT VERIFIED: reported done, but {why}. {summary}"
    elif status == "unclear":
        summary = f"UNCLEAR: the reply neither reports done nor blocked. {summary}"
    elif status != "done" and not summary.upper().startswith(status.upper()):
        summary = f"{status.upper().replace('_', ' ')}: {summary}"
    return {"summary": summary, "ok": status == "done", "status": status,
            "report": report, "queue": []}


def finish_with_text(state: SpecialistState, content: str) -> dict[str, Any]:
    """A reply without tool calls: a report written as JSON, or prose read conservatively."""
    text = content.strip()
    if not text:
        return step_end(state, "blocked", "the agent gave no report.", {}, content)
    written = report_in_text(text)
    if written is not None:
        return step_end(state, written.status, summary_of(written),
                       written.model_dump(exclude={"status", "summary"}), content)
    return step_end(state, read_prose(text), text, {"from": "prose"}, content)
