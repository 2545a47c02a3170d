"""How a specialist says it is finished: the built-in ``report`` tool, or failing that, text.

A specialist ends its step by calling ``report`` (status done | blocked | needs_input, a
summary, the ids and figures it produced, facts). Where a model cannot call tools it may
write the same object as JSON. Anything else is prose, read conservatively: a failure cue
makes it blocked, and it is done only when it clearly says so *and* the agent made a
successful tool call; otherwise it is ``unclear`` and the manager is told.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from tools.spec import json_schema

REPORT_TOOL = "report"

Status = Literal["done", "blocked", "needs_input"]


class ReportArgs(BaseModel):
    """The arguments of the ``report`` tool."""

    status: Status
    summary: str = Field(min_length=1)
    ids: list[str] = Field(default_factory=list)
    figures: dict[str, Any] = Field(default_factory=dict)
    facts: list[str] = Field(default_factory=list)

    @field_validator("status", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower().replace("-", "_").replace(" ", "_") if isinstance(v, str) else v

    @field_validator("ids", "facts", mode="before")
    @classmethod
    def _strings(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [v]
        return [str(x) for x in v] if isinstance(v, list) else v

    @field_validator("figures", mode="before")
    @classmethod
    def _figures(cls, v: Any) -> Any:
        if isinstance(v, list):
            return {str(i): x for i, x in enumerate(v)}
        return {} if v is None else v


def report_schema() -> dict[str, Any]:
    """The ``report`` tool as an OpenAI function schema."""
    return {"type": "function", "function": {
        "name": REPORT_TOOL,
        "description": ("Finish your step: say whether it is done, blocked or needs input "
                        "from a person, with a short summary and the ids and figures "
                        "your tool calls produced. Call it alone, as your last call."),
        "parameters": json_schema(ReportArgs)}}


def parse_report(arguments: str) -> ReportArgs:
    """Validate the ``report`` tool's raw JSON arguments; raises ``ValueError``."""
    try:
        raw = json.loads(arguments or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"arguments are not JSON ({e.msg})") from e
    if not isinstance(raw, dict):
        raise ValueError("arguments must be a JSON object")
    try:
        return ReportArgs.model_validate(raw)
    except ValidationError as e:
        raise ValueError("; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                                   for err in e.errors())) from e


_FENCED = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.DOTALL)
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def _json_objects(text: str) -> list[Any]:
    """JSON values in fenced blocks, ``<tool_call>`` tags or the bare text."""
    chunks = [*_FENCED.findall(text), *_TAGGED.findall(text)]
    if not chunks:
        start, end = text.find("{"), text.rfind("}")
        chunks = [text[start:end + 1]] if 0 <= start < end else []
    found = []
    for chunk in chunks:
        try:
            found.append(json.loads(chunk))
        except json.JSONDecodeError:
            continue
    return found


def _as_call(obj: Any) -> tuple[str, Any] | None:
    """``(name, arguments)`` of one tool-call-shaped object, in the shapes models write."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name") or obj.get("tool") or obj.get("tool_name")
    if not isinstance(name, str):
        return None
    for key in ("arguments", "args", "parameters", "input"):
        if key in obj:
            return name, obj[key]
    return name, {k: v for k, v in obj.items() if k not in {"name", "tool", "tool_name"}}


@dataclass(frozen=True)
class TextCalls:
    """Tool calls found in text: the one to run, or why none can be run."""

    call: tuple[str, str] | None = None  # (tool name, JSON arguments)
    problem: str = ""


def calls_in_text(text: str, tools: list[str]) -> TextCalls:
    """A tool call written as text (a JSON code block), when exactly one names a tool."""
    shaped: list[tuple[str, Any]] = []
    for obj in _json_objects(text):
        items = obj.get("tool_calls") if isinstance(obj, dict) else obj
        for item in items if isinstance(items, list) else [obj]:
            call = _as_call(item)
            if call is not None:
                shaped.append(call)
    if not shaped:
        return TextCalls()
    known = [(n, a) for n, a in shaped if n in tools]
    if len(shaped) == 1 and len(known) == 1:
        name, args = known[0]
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return TextCalls(problem=f"the arguments of {name} written in your text are "
                                         "not JSON")
        return TextCalls(call=(name, json.dumps(args)))
    names = ", ".join(sorted({n for n, _ in shaped}))
    return TextCalls(problem=f"your reply holds {len(shaped)} tool call(s) written as text "
                             f"({names}); make one real tool call at a time, with a tool "
                             f"you have ({', '.join(tools)})")


def report_in_text(text: str) -> ReportArgs | None:
    """A report written as JSON where the model could not call the tool."""
    for obj in _json_objects(text):
        if isinstance(obj, dict) and isinstance(obj.get("report"), dict):
            obj = obj["report"]
        if isinstance(obj, dict) and "status" in obj and "summary" in obj:
            try:
                return ReportArgs.model_validate(obj)
            except ValidationError:
                continue
    return None


_MARKUP = re.compile(r"<\s*(/?)\s*data\b", re.IGNORECASE)


def imitates_data(text: str) -> bool:
    """True when a model's own output contains Foreman's ``<data …>`` markup."""
    return bool(_MARKUP.search(text))


def neutralise(text: str) -> str:
    """Model-written text with any ``<data`` markup defused, so it never reads as tool data."""
    return _MARKUP.sub(lambda m: f"[{m.group(1)}data", text)


_NEEDS_INPUT = re.compile(
    r"\b(i need (more|the|your|additional)|need more (information|details)|please "
    r"(provide|confirm|specify|clarify)|could you (please )?(provide|clarify|confirm|tell)"
    r"|can you (provide|confirm|clarify)|awaiting (your|confirmation|input)|waiting for "
    r"(your|confirmation|input))", re.IGNORECASE)
_FAILURE = re.compile(
    r"\b(could ?n[o']t|can ?n[o']t|cannot|unable|(was|were|am|is|are)(n't| not) able"
    r"|not able|fail(ed|s|ure|ing)?|an error|the error|error:|returned an error"
    r"|exception|timed? ?out|not found|no such|(does|do|did)(n't| not) (exist|find|work)"
    r"|found no|no (results|record|match)|denied|rejected|refused|forbidden"
    r"|not (allowed|permitted|authori[sz]ed|possible)|permission|blocked|impossible"
    r"|unfortunately|i'?m sorry|i am sorry|apologi[sz]e|unavailable"
    r"|(has|have|had|was|were|is)(n't| not) (yet )?(been )?(issued|refunded|sent|completed|"
    r"processed|updated|closed|created|made|done|possible|opened|restarted|posted|found)"
    r"|no (refund|email|ticket|incident|change|action)s? (was|were|has|have|could))",
    re.IGNORECASE)
_SUCCESS = re.compile(
    r"\b(done|complete[d]?|success(ful(ly)?)?|issued|refunded|sent|emailed|updated|closed"
    r"|created|opened|posted|restarted|scaled|rolled back|found|retrieved|looked up"
    r"|confirmed|verified|healthy|in transit|shipped|resolved|mitigated|recorded|noted"
    r"|went (out|through)|here (is|are)|shows?|reports?|is (degraded|down|up|running)"
    r"|status|version|replicas|latency|error rate|owns|belongs)\b",
    re.IGNORECASE)


def read_prose(text: str) -> str:
    """What a prose reply says about its step: done | blocked | needs_input | unclear.

    ``done`` here only means the text claims it; the caller still requires a successful
    tool call. The old one-word markers (``DONE:`` / ``BLOCKED:``) are read as such.
    """
    head = text.lstrip().upper()
    if head.startswith("BLOCKED"):
        return "blocked"
    if _NEEDS_INPUT.search(text):
        return "needs_input"
    if _FAILURE.search(text):
        return "blocked"
    if head.startswith("DONE") or _SUCCESS.search(text):
        return "done"
    return "unclear"


def summary_of(report: ReportArgs) -> str:
    """The report as the one line of text the manager reads."""
    parts = [neutralise(report.summary.strip())]
    if report.ids:
        parts.append(f"Ids: {', '.join(report.ids)}.")
    if report.figures:
        parts.append("Figures: " + ", ".join(f"{k}={v}" for k, v in report.figures.items())
                     + ".")
    if report.facts:
        parts.append("Facts: " + "; ".join(neutralise(f) for f in report.facts) + ".")
    return " ".join(parts)
