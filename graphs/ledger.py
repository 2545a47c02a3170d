"""Structured manager output: pydantic models, tolerant parsing and agent-name matching."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, TypeVar

from json_repair import repair_json
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from graphs.errors import LedgerError
from graphs.state import PlanStep, TaskLedger

M = TypeVar("M", bound=BaseModel)

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class FactsOut(BaseModel):
    """Facts section of the task ledger as the model writes it."""

    given: list[str] = Field(default_factory=list)
    to_look_up: list[str] = Field(default_factory=list)
    to_derive: list[str] = Field(default_factory=list)
    guesses: list[str] = Field(default_factory=list)


class PlanStepOut(BaseModel):
    """One plan step as the model writes it."""

    id: str
    agent: str
    goal: str
    depends_on: list[str] = Field(default_factory=list)


class TaskLedgerOut(BaseModel):
    """The task ledger: facts and a plan with owners and dependencies."""

    facts: FactsOut = Field(default_factory=FactsOut)
    plan: list[PlanStepOut] = Field(min_length=1)

    def to_state(self) -> TaskLedger:
        """Plain-dict form for graph state."""
        return {
            "facts": {
                "given": self.facts.given,
                "to_look_up": self.facts.to_look_up,
                "to_derive": self.facts.to_derive,
                "guesses": self.facts.guesses,
            },
            "plan": [
                PlanStep(id=s.id, agent=s.agent, goal=s.goal, depends_on=s.depends_on)
                for s in self.plan
            ],
        }


class Judgement(BaseModel):
    """A yes/no answer with its reason."""

    answer: bool
    reason: str = ""

    @field_validator("answer", mode="before")
    @classmethod
    def _yes_no(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in {"yes", "no"}:
            return v.strip().lower() == "yes"
        return v


class NextStepOut(BaseModel):
    """A delegation proposed by the progress ledger; its ``step_id`` is only a hint."""

    step_id: str = ""
    agent: str = ""
    instruction: str = ""
    reason: str = ""

    @model_validator(mode="before")
    @classmethod
    def _tolerant(cls, v: Any) -> Any:
        # Models write the id as "id" or "step", as a number, or as null.
        if not isinstance(v, dict):
            return v
        v = dict(v)
        raw = next((v[k] for k in ("step_id", "id", "step") if v.get(k) is not None), "")
        v["step_id"] = str(raw)
        for k in ("agent", "instruction", "reason"):
            v[k] = "" if v.get(k) is None else str(v[k])
        return v


class DropOut(BaseModel):
    """A plan step the manager gives up on, with why."""

    step_id: str
    reason: str = ""

    @model_validator(mode="before")
    @classmethod
    def _bare_id(cls, v: Any) -> Any:
        return {"step_id": str(v)} if isinstance(v, str | int) else v


class ProgressLedgerOut(BaseModel):
    """The per-round progress ledger."""

    is_request_satisfied: Judgement
    is_in_loop: Judgement
    is_progress_being_made: Judgement
    cannot_proceed: Judgement = Field(default_factory=lambda: Judgement(answer=False))
    next_steps: list[NextStepOut] = Field(default_factory=list)
    drop_steps: list[DropOut] = Field(default_factory=list)

    @field_validator("next_steps", "drop_steps", mode="before")
    @classmethod
    def _list(cls, v: Any) -> Any:
        return [] if v is None else [v] if isinstance(v, dict) else v


class VerdictOut(BaseModel):
    """The verifier's verdict on a claimed-satisfied request."""

    verified: bool
    reason: str = ""
    missing: list[str] = Field(default_factory=list)


def extract_json(text: str) -> Any:
    """Pull a JSON value out of model text: code fences, prose around it, broken syntax."""
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    start = body.find("{")
    end = body.rfind("}")
    if start != -1 and end > start:
        body = body[start : end + 1]
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        repaired = repair_json(body, return_objects=True)
        if repaired in ("", None, [], {}):
            raise LedgerError("no JSON object found in model output") from None
        return repaired


def parse_model(text: str | None, model: type[M]) -> M:
    """Parse and validate structured output; raises ``LedgerError`` naming what is wrong."""
    if not text or not text.strip():
        raise LedgerError("empty output")
    data = extract_json(text)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in e.errors()
        )
        raise LedgerError(problems) from e


def match_agent(name: str, agents: list[str]) -> str | None:
    """Resolve a possibly misspelt agent name; None when nothing is close enough."""
    if name in agents:
        return name
    lowered = {a.lower(): a for a in agents}
    key = name.strip().lower().replace(" ", "_")
    if key in lowered:
        return lowered[key]
    close = difflib.get_close_matches(key, list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else None
