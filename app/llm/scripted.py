"""The built-in offline models: deterministic, read the prompt like a model would.

They know the bundled demo tasks through playbooks and drive them through the real graph,
tools and sandbox. For any other task they make a coherent one-step plan and give an honest
final answer saying nothing was done because they ran offline. Tests replace behaviour per
role with a ``Behaviour`` hook; the hook sees the request and may return None to defer.
``weak_roles`` makes the small tier act like a weak model: for those roles its structured
output fails the schema, so the router's escalation cascade can be seen offline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from app.config.settings import ModelEntry
from app.llm.playbook import Step, for_instruction, for_task
from app.llm.provider import ProviderReply, TokenSink
from app.llm.references import (
    MISSING,
    Sources,
    Unresolved,
    resolve,
    step_figures,
    tool_results,
)
from app.llm.scripted_manager import (
    NOT_TOLD,
    OFFLINE_NOTE,
    final,
    plan,
    tag,
    verify,
)
from app.llm.scripted_manager import (
    progress as progress,  # the bench builds its scripted manager from it
)
from app.llm.tokens import completion_tokens as count_completion
from app.llm.tokens import request_tokens
from graphs.ports import ModelRequest, ToolCall
from graphs.views import parse_result_lines

Behaviour = Callable[[ModelRequest], "ProviderReply | None"]

STREAM_WORDS = 3  # words per streamed piece of a scripted reply


def tokens(text: str) -> int:
    """A rough token count (4 characters a token) for scripted usage figures."""
    return max(1, len(text) // 4)


class ScriptedProvider:
    """Deterministic offline provider; ``latency_s`` simulates a model's think time."""

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        latency_s: float = 0.0,
        weak_roles: Iterable[str] = (),
    ) -> None:
        self.behaviour = behaviour
        self.latency_s = latency_s
        self.weak_roles = tuple(weak_roles)
        self.calls = 0

    async def complete(self, model: ModelEntry, request: ModelRequest) -> ProviderReply:
        """Answer one request as the role asks."""
        self.calls += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        reply = self.behaviour(request) if self.behaviour else None
        if reply is None and self._weak(model, request):
            reply = _text(json.dumps({"answer": "looks fine to me"}))
        if reply is None:
            reply = self._default(request)
        completion = (reply.content or "") + "".join(c.arguments for c in reply.tool_calls)
        return ProviderReply(
            content=reply.content,
            tool_calls=reply.tool_calls,
            prompt_tokens=self.count_tokens(model, request),
            completion_tokens=count_completion(model.litellm_model, completion),
        )

    async def stream(self, model: ModelEntry, request: ModelRequest,
                     on_token: TokenSink) -> ProviderReply:
        """``complete``'s reply, its text handed out a few words at a time."""
        reply = await self.complete(model, request)
        words = re.findall(r"\S+\s*|\s+", reply.content or "")
        for i in range(0, len(words), STREAM_WORDS):
            on_token("".join(words[i:i + STREAM_WORDS]))
            await asyncio.sleep(0)  # let readers see each piece as it comes
        return reply

    def count_tokens(self, model: ModelEntry, request: ModelRequest) -> int:
        """litellm's count for the model, as ``complete`` reports, so reservations match usage."""
        return request_tokens(model.litellm_model, request)

    def _weak(self, model: ModelEntry, request: ModelRequest) -> bool:
        return (
            model.tier == "small"
            and request.json_output
            and any(request.role.startswith(r) for r in self.weak_roles)
        )

    def _default(self, request: ModelRequest) -> ProviderReply:
        # Latest user message first, so a repair turn still sees the original request.
        prompt = "\n".join(str(m.get("content") or "") for m in reversed(request.messages)
                           if m["role"] == "user")
        role = request.role
        if role == "manager.plan":
            return _text(json.dumps(plan(prompt)))
        if role == "manager.progress":
            return _text(json.dumps(progress(prompt)))
        if role == "manager.verify":
            return _text(json.dumps(verify(prompt)))
        if role == "manager.final":
            return _text(final(prompt))
        return specialist(request)


def _text(content: str) -> ProviderReply:
    return ProviderReply(content=content)


def _call_id(request: ModelRequest, index: int) -> str:
    digest = hashlib.sha256(f"{request.call_key}/{index}".encode()).hexdigest()
    return f"call_{digest[:20]}"


def _tool_error(output: str) -> str | None:
    """The ``error`` of a tool result block, if it has one."""
    body = output.split("\n", 1)[-1].rsplit("\n", 1)[0]
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    return str(data["error"]) if isinstance(data, dict) and "error" in data else None


_AUTO = re.compile(r"^(?P<goal>.*) \(plan step (?P<id>[^;]+); the request: (?P<task>.*)\)$",
                   re.DOTALL)


def step_for(instruction: str) -> tuple[Step, dict[str, str]] | None:
    """The playbook step an instruction asks for, with what it told for the step's references:
    by the instruction's template, or for a step Foreman dispatched itself (goal, plan step id
    and the request), by the request and the goal (then it was told nothing)."""
    found = for_instruction(instruction)
    m = _AUTO.match(" ".join(instruction.split())) if found is None else None
    book = for_task(m.group("task")) if m else None
    if m is None or book is None:
        return found
    goal = " ".join(m.group("goal").split())
    step = next((s for s in book.steps if " ".join(s.goal.split()) == goal),
                book.step(m.group("id").strip()))
    return (step, {}) if step else None


def sources(request: ModelRequest, told: dict[str, str],
            skip: tuple[str, ...] = ()) -> Sources:
    """What a specialist knows: its conversation, its tools' results, and what it was told
    (the instruction first, then the figures the manager's brief shows)."""
    system = next((str(m.get("content")) for m in request.messages if m["role"] == "system"), "")
    shown = step_figures(parse_result_lines(tag(system, "ledger") or ""))
    heard = {f"{sid}.{k}": str(v) for sid, figs in shown.items() for k, v in figs.items()}
    return Sources(text="\n".join(str(m.get("content") or "") for m in request.messages),
                   results=tool_results(request.messages, skip),
                   told={**heard, **{k: v for k, v in told.items() if v.strip() != MISSING}})


def report(request: ModelRequest, index: int, status: str, summary: str,
           ids: list[str] | None = None, figures: dict[str, Any] | None = None) -> ProviderReply:
    """The specialist's last call: the built-in ``report`` tool."""
    args = {"status": status, "summary": summary, "ids": ids or [], "figures": figures or {}}
    return ProviderReply(content=None, tool_calls=[
        ToolCall(id=_call_id(request, index), name="report", arguments=json.dumps(args))])


def step_report(step: Step, src: Sources, outputs: list[str]) -> tuple[str, str, list[str],
                                                                       dict[str, Any]]:
    """(status, summary, ids, figures) of a step whose calls are made: filled from what the
    tools returned; blocked when they do not show what the report must say."""
    joined = "\n".join(outputs)
    ids = sorted(set(re.findall(r'"id": ?"([A-Z]+-[0-9A-F]{4,})"', joined)))
    # In shadow mode a write is not executed: its result holds the arguments it would have had.
    shadow = [r for rs in src.results.values() for r in rs if isinstance(r, dict)
              and r.get("shadow")]
    if shadow:
        src = replace(src, results={t: [r.get("args", r) if isinstance(r, dict) and
                                        r.get("shadow") else r for r in rs]
                                    for t, rs in src.results.items()})
    figures: dict[str, Any] = {}
    try:
        for name, value in step.figures.items():
            try:
                figures[name] = resolve(value, src)
            except Unresolved:
                if not shadow:
                    raise
        summary = str(resolve(step.report, src))
    except Unresolved as e:
        if not shadow:
            return ("blocked", f"the tool results do not show {e}, so I cannot report it.",
                    ids, {})
        summary = "; ".join(str(r.get("message")) for r in shadow) + "."
    # Cite the best passage of each knowledge search, as a model is told to.
    cited = re.findall(r'"citation": ?"([^"]+)"', joined)
    return "done", summary + (f" Source: {cited[0]}." if cited else ""), ids, figures


def call_args(args: dict[str, Any], src: Sources) -> dict[str, Any] | str:
    """A call's arguments filled in from what the agent knows, or why they cannot be."""
    try:
        return dict(resolve(args, src))
    except Unresolved as e:
        return f"{NOT_TOLD} {_missing(str(e))} and no tool of mine returned it, so I did not " \
            "guess it."


def _missing(ref: str) -> str:
    """A reference in words: ``told:S1.order_status`` is "the order_status of step S1"."""
    kind, _, path = ref.partition(":")
    head, _, name = path.partition(".")
    if kind in ("told", "step") and name:
        return f"the {name} of step {head}"
    if kind == "result" and name:
        return f"the {name} from {head}"
    if kind == "ref":
        return f"the {path} id"
    return ref


def specialist(request: ModelRequest) -> ProviderReply:
    """Make the step's next scripted call, then report on what the tools returned."""
    user = next((str(m.get("content")) for m in request.messages if m["role"] == "user"), "")
    found = step_for(user)
    made = sum(1 for m in request.messages if m["role"] == "assistant" and m.get("tool_calls"))
    if found is None:
        return report(request, made, "blocked", f"{OFFLINE_NOTE}; this step is not one of "
                      "them, so I looked up and changed nothing.")
    step, told = found
    outputs = [str(m.get("content")) for m in request.messages if m["role"] == "tool"]
    errors = [e for e in (_tool_error(o) for o in outputs) if e]
    if errors:
        return report(request, made, "blocked", errors[-1][:500])
    src = sources(request, told)
    if made < len(step.calls):
        call = step.calls[made]
        args = call_args(call.args, src)
        if isinstance(args, str):
            return report(request, made, "blocked", args)
        return ProviderReply(
            content=None,
            tool_calls=[
                ToolCall(id=_call_id(request, made), name=call.tool, arguments=json.dumps(args))
            ],
        )
    status, summary, ids, figures = step_report(step, src, outputs)
    return report(request, made, status, summary, ids, figures)
