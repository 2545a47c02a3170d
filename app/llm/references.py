"""References in playbook text: the scripted agents' arguments, reports and answers are built
from what they were told and what their tools returned, never from canned figures.

A reference is ``{source:path}`` or ``{source:path|format}``:

- ``{ref:INC}``: the first id with that prefix (``INC-...``) seen in the conversation;
- ``{result:TOOL.a.b}``: field ``a.b`` of the latest result of tool ``TOOL`` in this step
  (a list is indexed by number: ``payments.0.amount_usd``);
- ``{step:S2.name}``: figure ``name`` of step S2's latest done report (the manager's side:
  instructions and the final answer);
- ``{told:S2.name}``: what the manager's instruction said where its template has
  ``{step:S2.name}``, else what the run's brief shows of S2's figures (an instruction the
  manager could not fill says ``unknown`` there: that is not being told).

Formats: ``money`` (two decimals), ``int``, ``text`` (the default). A path is a dotted list of
keys: it is looked up, never evaluated. A value that is one reference keeps its type (a number
stays a number); a reference that cannot be resolved raises ``Unresolved``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

REFERENCE = re.compile(r"\{(?P<source>ref|result|step|told):(?P<path>[A-Za-z0-9_.\-]+)"
                       r"(?:\|(?P<format>money|int|text))?\}")
_FIGURES = re.compile(r"Figures: (?P<body>.*?)\.(?= Facts: |\s*$)", re.DOTALL)
_PAIR = re.compile(r"(\w+)=([^\s,]+?)(?=,\s\w+=|$)")
_SOURCE = re.compile(r'<data source="tool:(?P<tool>[\w.\-]+)">\n(?P<body>.*?)\n</data>',
                     re.DOTALL)


MISSING = "unknown"  # what an instruction says where the manager did not know a figure


class Unresolved(LookupError):
    """A reference whose value the agent was not told and no tool returned."""


@dataclass
class Sources:
    """Where references are looked up."""

    text: str = ""  # the conversation, for ``{ref:PREFIX}`` ids
    results: dict[str, list[Any]] = field(default_factory=dict)  # tool -> results, oldest first
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # step id -> figures
    told: dict[str, str] = field(default_factory=dict)  # "S2.name" -> value as told


def has_references(value: Any) -> bool:
    """True when a playbook value (or any string inside it) holds a reference."""
    return bool(REFERENCE.search(json.dumps(value)))


def _walk(value: Any, path: list[str]) -> Any:
    for key in path:
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise Unresolved(key)
    return value


def _number(text: str) -> Any:
    """A told value as the type it reads as: ``6`` → 6, ``150.00`` → 150.0, else text."""
    cleaned = text.strip().lstrip("$")
    if re.fullmatch(r"-?\d+", cleaned):
        return int(cleaned)
    if re.fullmatch(r"-?\d+\.\d+", cleaned):
        return float(cleaned)
    return text.strip()


def lookup(source: str, path: str, src: Sources) -> Any:
    """The raw value one reference names; ``Unresolved`` when nothing carries it."""
    if source == "ref":
        found = re.search(rf"\b{re.escape(path)}-[0-9A-F]{{6,}}\b", src.text)
        if found is None:
            raise Unresolved(f"ref:{path}")
        return found.group(0)
    head, _, rest = path.partition(".")
    if source == "result":
        outputs = src.results.get(head) or []
        if not outputs:
            raise Unresolved(f"result:{path}")
        return _walk(outputs[-1], rest.split(".") if rest else [])
    if source == "step":
        if head not in src.steps or rest not in src.steps[head]:
            raise Unresolved(f"step:{path}")
        return src.steps[head][rest]
    if src.told.get(path, MISSING).strip() == MISSING:
        raise Unresolved(f"told:{path}")
    return _number(src.told[path])


def render(value: Any, fmt: str | None) -> str:
    """A value as text in a playbook sentence."""
    if fmt == "money" and isinstance(value, int | float | str):
        try:
            return f"{float(value):.2f}"
        except ValueError:
            return str(value)
    if fmt == "int" and isinstance(value, int | float):
        return str(int(value))
    return str(value)


def resolve(value: Any, src: Sources) -> Any:
    """``value`` with every reference filled in (recursively through lists and dicts)."""
    if isinstance(value, dict):
        return {k: resolve(v, src) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, src) for v in value]
    if not isinstance(value, str):
        return value
    whole = REFERENCE.fullmatch(value)
    if whole is not None and whole.group("format") in (None, "int"):
        found = lookup(whole.group("source"), whole.group("path"), src)
        return int(found) if whole.group("format") == "int" else found
    return REFERENCE.sub(lambda m: render(lookup(m.group("source"), m.group("path"), src),
                                          m.group("format")), value)


def fill(text: str, src: Sources, missing: str = MISSING) -> str:
    """Text with references filled in, an unresolvable one written as ``missing``."""
    def sub(m: re.Match[str]) -> str:
        try:
            return render(lookup(m.group("source"), m.group("path"), src), m.group("format"))
        except Unresolved:
            return missing
    return REFERENCE.sub(sub, text)


def _norm(text: str) -> str:
    return " ".join(text.split())


@functools.lru_cache(maxsize=1024)
def template_pattern(template: str) -> re.Pattern[str]:
    """A pattern matching ``template`` filled in: each ``{step:...}`` becomes a capture
    (built once per template: every scripted reply matches against all of them)."""
    parts: list[str] = []
    pos = 0
    text = _norm(template)
    for i, m in enumerate(REFERENCE.finditer(text)):
        parts.append(re.escape(text[pos:m.start()]))
        parts.append(f"(?P<g{i}>.+?)" if m.group("source") == "step" else ".+?")
        pos = m.end()
    parts.append(re.escape(text[pos:]))
    return re.compile("".join(parts), re.DOTALL)


def told_by(template: str, instruction: str) -> dict[str, str] | None:
    """What an instruction said for each ``{step:...}`` of its template; None: no match."""
    m = template_pattern(template).fullmatch(_norm(instruction))
    if m is None:
        return None
    names = _reference_paths(template)
    return {names[int(k[1:])]: v for k, v in m.groupdict().items()}


@functools.lru_cache(maxsize=1024)
def _reference_paths(template: str) -> tuple[str, ...]:
    return tuple(r.group("path") for r in REFERENCE.finditer(_norm(template)))


def figures_in(summary: str) -> dict[str, Any]:
    """The figures a step's one-line summary carries (``Figures: a=1, b=x.``)."""
    m = _FIGURES.search(summary)
    if m is None:
        return {}
    return {k: _number(v) for k, v in _PAIR.findall(m.group("body"))}


def tool_results(messages: Sequence[Mapping[str, Any]], skip: tuple[str, ...] = ()
                 ) -> dict[str, list[Any]]:
    """The JSON results of the tool calls in a conversation, per tool, oldest first; calls
    whose id starts with one of ``skip`` are left out."""
    out: dict[str, list[Any]] = {}
    for m in messages:
        call_id = str(m.get("tool_call_id") or "")
        if m.get("role") != "tool" or (skip and call_id.startswith(skip)):
            continue
        found = _SOURCE.search(str(m.get("content") or ""))
        if found is None:
            continue
        try:
            data = json.loads(found.group("body"))
        except json.JSONDecodeError:
            continue
        out.setdefault(found.group("tool"), []).append(data)
    return out


def step_figures(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each step's figures from its latest done result: structured ``reported.figures`` where
    the record has them, else what its summary line says."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        done = r.get("ok") or r.get("status") == "done"
        if not done:
            continue
        reported = r.get("reported") or {}
        figures = reported.get("figures") if isinstance(reported, Mapping) else None
        out[str(r.get("step_id"))] = dict(figures) if isinstance(figures, Mapping) else (
            figures_in(str(r.get("summary") or "")))
    return out
