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
from typing import Any

from app.llm.playbook import Playbook, Step, for_instruction, for_task
from app.llm.provider import ProviderReply, TokenSink
from app.llm.tokens import completion_tokens as count_completion
from app.llm.tokens import prompt_tokens as count_prompt
from app.settings import ModelEntry
from graphs.ports import ModelRequest, ToolCall

Behaviour = Callable[[ModelRequest], "ProviderReply | None"]

_REF = re.compile(r"\{ref:([A-Z]+)\}")
OFFLINE_NOTE = (
    "Foreman ran offline with its built-in scripted models, which only know the bundled demo tasks"
)


STREAM_WORDS = 3  # words per streamed piece of a scripted reply


def tag(text: str, name: str) -> str | None:
    """Contents of ``<name>...</name>`` (or ``<data source="name">``) in a prompt."""
    m = re.search(rf"<{name}>\n?(.*?)\n?</{name}>", text, re.DOTALL)
    if m is None:
        m = re.search(rf'<data source="{name}">\n?(.*?)\n?</data>', text, re.DOTALL)
    return m.group(1).strip() if m else None


def _json_tag(text: str, name: str) -> Any:
    raw = tag(text, name)
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None


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
        return count_prompt(model.litellm_model, request.messages, request.tools)

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
            status = _json_tag(prompt, "plan_status") or []
            done = bool(status) and all(s.get("done") for s in status)
            missing = [s["id"] for s in status if not s.get("done")]
            return _text(
                json.dumps(
                    {
                        "verified": done,
                        "reason": "all plan steps reported done"
                        if done
                        else "some steps are not done",
                        "missing": missing,
                    }
                )
            )
        if role == "manager.final":
            return _text(final(prompt))
        return specialist(request)


def _text(content: str) -> ProviderReply:
    return ProviderReply(content=content)


def _task_of(prompt: str) -> str:
    return tag(prompt, "task") or ""


def _generic_plan(task: str, agents: list[str]) -> dict[str, Any]:
    return {
        "facts": {
            "given": [task],
            "to_look_up": [],
            "to_derive": [],
            "guesses": ["offline models cannot act on requests they do not know"],
        },
        "plan": [
            {
                "id": "S1",
                "agent": agents[0] if agents else "researcher",
                "goal": "Gather what is known about the request",
                "depends_on": [],
            }
        ],
    }


def _ledger(book: Playbook, skip: set[str]) -> dict[str, Any]:
    steps = [s for s in book.steps if s.id not in skip]
    return {
        "facts": book.facts,
        "plan": [
            {
                "id": s.id,
                "agent": s.agent,
                "goal": s.goal,
                "depends_on": [d for d in s.depends_on if d not in skip],
            }
            for s in steps
        ],
    }


def _agents_in(prompt: str) -> list[str]:
    m = re.search(r"one of: ([^>]+)>", prompt) or re.search(r"agents: ([^\n]+)\.", prompt)
    return [a.strip() for a in m.group(1).split(",")] if m else []


def plan(prompt: str) -> dict[str, Any]:
    """Task ledger for the plan and replan prompts."""
    task = _task_of(prompt)
    book = for_task(task)
    if book is None:
        return _generic_plan(task, _agents_in(prompt))
    results = _json_tag(prompt, "step_results") or []
    done = {r["step_id"] for r in results if r.get("ok")}
    return _ledger(book, done)


def progress(prompt: str) -> dict[str, Any]:
    """Progress ledger: satisfied when all steps are done, else every ready step in parallel."""
    status = _json_tag(prompt, "plan_status") or []
    done = {s["id"] for s in status if s.get("done")}
    book = for_task(_task_of(prompt))
    ready = [s for s in status if not s.get("done") and set(s.get("depends_on", [])) <= done]
    steps = []
    for s in ready:
        known = book.step(s["id"]) if book else None
        instruction = (
            known.instruction
            if known
            else (f"Gather what is known about this request: {_task_of(prompt)}")
        )
        steps.append(
            {
                "step_id": s["id"],
                "agent": s["agent"],
                "instruction": instruction,
                "reason": "its dependencies are done",
            }
        )
    satisfied = bool(status) and not ready and len(done) == len(status)
    results = _json_tag(prompt, "step_results") or []
    refused = {r["step_id"]: "the approver rejected step" for r in results
               if not r.get("ok") and "rejected by the approver" in r.get("summary", "")}
    refused.update({r["step_id"]: "offline models cannot do step" for r in results
                    if not r.get("ok") and OFFLINE_NOTE in r.get("summary", "")})
    blocked = [s for s in steps if s["step_id"] in refused]
    if blocked:
        # A human said no, or no model here can do it: retrying would only fail again.
        sid = blocked[0]["step_id"]
        return {
            "is_request_satisfied": {"answer": False, "reason": "a step is blocked"},
            "is_in_loop": {"answer": False, "reason": ""},
            "is_progress_being_made": {"answer": False, "reason": "blocked"},
            "cannot_proceed": {"answer": True, "reason": f"{refused[sid]} {sid}"},
            "next_steps": [],
        }
    return {
        "is_request_satisfied": {
            "answer": satisfied,
            "reason": f"{len(done)} of {len(status)} steps done",
        },
        "is_in_loop": {"answer": False, "reason": "each round advances the plan"},
        "is_progress_being_made": {
            "answer": bool(steps) or satisfied,
            "reason": "steps are ready" if steps else "nothing ready",
        },
        "next_steps": steps,
    }


def final(prompt: str) -> str:
    """Final answer: the playbook's outcome plus each step's report, or an honest offline note."""
    task = _task_of(prompt)
    book = for_task(task)
    reason = re.search(r"How the run ended: ([^.\n]+)", prompt)
    ended = reason.group(1) if reason else "satisfied"
    results = _json_tag(prompt, "step_results") or []
    lines = []
    if book is None:
        lines.append(
            f"{OFFLINE_NOTE}, and this request is not one of them, so nothing was "
            "looked up or changed. Configure a model provider key to run it for real."
        )
    elif ended == "satisfied":
        lines.append(book.final)
    else:
        lines.append(f"The run stopped before finishing ({ended}). What was done:")
    lines.extend(
        f"- {r['agent']} ({r['step_id']}): {r['summary']}" for r in results if book is not None
    )
    return "\n".join(lines)


def _resolve(value: Any, context: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            found = re.search(rf"\b{m.group(1)}-[0-9A-F]{{6,}}\b", context)
            return found.group(0) if found else m.group(0)

        return _REF.sub(sub, value)
    return value


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


def step_for(instruction: str) -> Step | None:
    """The playbook step an instruction asks for: by its exact text, or for a step Foreman
    dispatched itself (goal, plan step id and the request), by the request and the goal."""
    step = for_instruction(instruction)
    m = _AUTO.match(" ".join(instruction.split())) if step is None else None
    book = for_task(m.group("task")) if m else None
    if m is None or book is None:
        return step
    goal = " ".join(m.group("goal").split())
    return next((s for s in book.steps if " ".join(s.goal.split()) == goal),
                book.step(m.group("id").strip()))


def report(request: ModelRequest, index: int, status: str, summary: str,
           ids: list[str] | None = None) -> ProviderReply:
    """The specialist's last call: the built-in ``report`` tool."""
    args = {"status": status, "summary": summary, "ids": ids or []}
    return ProviderReply(content=None, tool_calls=[
        ToolCall(id=_call_id(request, index), name="report", arguments=json.dumps(args))])


def specialist(request: ModelRequest) -> ProviderReply:
    """Make the step's next scripted call, then report on what the tools returned."""
    user = next((str(m.get("content")) for m in request.messages if m["role"] == "user"), "")
    step: Step | None = step_for(user)
    made = sum(1 for m in request.messages if m["role"] == "assistant" and m.get("tool_calls"))
    if step is None:
        return report(request, made, "blocked", f"{OFFLINE_NOTE}; this step is not one of "
                      "them, so I looked up and changed nothing.")
    outputs = [str(m.get("content")) for m in request.messages if m["role"] == "tool"]
    errors = [e for e in (_tool_error(o) for o in outputs) if e]
    if errors:
        return report(request, made, "blocked", errors[-1][:500])
    if made < len(step.calls):
        call = step.calls[made]
        context = "\n".join(str(m.get("content") or "") for m in request.messages)
        args = {k: _resolve(v, context) for k, v in call.args.items()}
        return ProviderReply(
            content=None,
            tool_calls=[
                ToolCall(id=_call_id(request, made), name=call.tool, arguments=json.dumps(args))
            ],
        )
    ids = sorted(set(re.findall(r'"id": ?"([A-Z]+-[0-9A-F]{4,})"', "\n".join(outputs))))
    # Cite the best passage of each knowledge search, as a model is told to.
    cited = re.findall(r'"citation": ?"([^"]+)"', "\n".join(outputs))
    suffix = f" Source: {cited[0]}." if cited else ""
    return report(request, made, "done", f"{step.report}{suffix}", ids)
