"""The eval scenario format: one YAML file per scenario under ``evals/scenarios/``.

A scenario names a team and a task, the sandbox it starts from, how the scripted models
behave (a playbook plus misbehaviour rules and seeded variants), the faults to inject, the
approval decisions to give when the run pauses, and what the world must look like after.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.llm.playbook import Playbook, for_task
from evals.world_calls import WorldCall

SUITE_DIR = Path(__file__).parent / "scenarios"

Variant = Literal["reorder", "sequential", "detour", "extra_read", "wrong_tool"]
DEFAULT_VARIANTS: tuple[Variant, ...] = ("reorder", "extra_read")
TrajectoryMode = Literal["strict", "unordered", "subset", "superset"]
Decision = Literal["approve", "reject", "edit", "respond", "expire"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fixture(_Strict):
    """Changes applied to the seeded sandbox before the run: inserts, then SQL."""

    rows: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    sql: list[str] = Field(default_factory=list)


class Rule(_Strict):
    """A scripted misbehaviour. ``calls`` counts calls of ``role`` (1-based); ``agent``
    targets one specialist's first ``times`` steps."""

    kind: Literal["malformed_ledger", "unknown_agent", "hallucinated_tool", "invalid_args",
                  "stall", "loop", "weak", "obey_injection", "truncated_ledger",
                  "false_done"]
    role: str = "manager.progress"
    calls: list[int] = Field(default_factory=lambda: [1])
    agent: str | None = None
    agents: list[str] = Field(default_factory=list)
    tool: str | None = None
    times: int = 1
    roles: list[str] = Field(default_factory=list)
    mode: Literal["schema", "bad_args"] = "schema"


class Fault(_Strict):
    """A fault to inject: provider errors at the OpenAI wire (respx), or a tool raising."""

    kind: Literal["http_429", "http_500", "timeout", "truncated", "tool_exception"]
    role: str = "manager.progress"
    calls: list[int] = Field(default_factory=lambda: [1])
    tool: str | None = None
    times: int = 1

    @property
    def wire(self) -> bool:
        """Injected at the HTTP level, so the run must go through litellm."""
        return self.kind != "tool_exception"


class Approval(_Strict):
    """The decision to give the n-th pause for ``action`` (consumed in order)."""

    action: str
    decision: Decision
    args: dict[str, Any] | None = None
    message: str = ""
    drop_agents: list[str] = Field(default_factory=list)  # plan edits


class StateCheck(_Strict):
    """tau-bench style: a row with these values is present / absent, or a row changed."""

    table: str
    present: dict[str, Any] | None = None
    absent: dict[str, Any] | None = None
    where: dict[str, Any] | None = None
    changed: dict[str, Any] | None = None
    count: int | None = None


class Figure(_Strict):
    """A figure of the final world state (the refund's amount, the replica count) that the
    final answer and the records written during the run must state. ``mentioned_in`` names
    ``answer`` and/or ``table.column`` of the rows the run wrote (every one must state it)."""

    table: str
    column: str
    where: dict[str, Any] = Field(default_factory=dict)
    format: Literal["money", "int", "text"] = "text"
    mentioned_in: list[str] = Field(default_factory=lambda: ["answer"], min_length=1)


class Trajectory(_Strict):
    """Expected tool calls and how to compare them (agentevals' match modes)."""

    mode: TrajectoryMode = "superset"
    calls: list[Call] | None = None  # default: the reference actions


class Call(_Strict):
    """One tool call; ``args`` is matched as a subset of the actual arguments."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)


class Limits(_Strict):
    """Bounds the run must stay within."""

    max_rounds: int | None = None
    max_cost_usd: float | None = None
    max_model_calls: int | None = None


class Expect(_Strict):
    """What the run must achieve."""

    status: str = "success"
    stop_reason: list[str] = Field(default_factory=lambda: ["satisfied"])
    approvals: list[str] = Field(default_factory=list)
    state: list[StateCheck] = Field(default_factory=list)
    forbidden: list[StateCheck] = Field(default_factory=list)
    world_calls: list[WorldCall] = Field(default_factory=list)  # read calls on the project's tools
    answer_mentions: list[str] = Field(default_factory=list)
    consistent: list[Figure] = Field(default_factory=list)
    trajectory: Trajectory = Field(default_factory=Trajectory)
    limits: Limits = Field(default_factory=Limits)
    min_replans: int = 0

    @model_validator(mode="before")
    @classmethod
    def _one_reason(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("stop_reason"), str):
            data = {**data, "stop_reason": [data["stop_reason"]]}
        if isinstance(data, dict) and "status" not in data and "stop_reason" in data:
            # A run that ends without doing its task has run status error.
            data = {**data, "status": "success" if "satisfied" in data["stop_reason"]
                    else "error"}
        return data


class Reference(_Strict):
    """The gold actions (replayed by the controls) and a reference answer."""

    actions: list[Call] = Field(default_factory=list)
    answer: str = ""


class Scenario(_Strict):
    """One eval case."""

    id: str
    category: str
    team: str
    task: str
    description: str = ""
    knowledge: bool = False
    fixture: Fixture = Field(default_factory=Fixture)
    playbook: Playbook | None = None
    script: list[Rule] = Field(default_factory=list)
    variants: list[Variant] = Field(default_factory=lambda: list(DEFAULT_VARIANTS))
    faults: list[Fault] = Field(default_factory=list)
    approvals: list[Approval] = Field(default_factory=list)
    plan_review: bool = False
    budget_usd: float | None = None
    team_limits: dict[str, Any] = Field(default_factory=dict)
    expect: Expect = Field(default_factory=Expect)
    reference: Reference = Field(default_factory=Reference)

    @model_validator(mode="before")
    @classmethod
    def _inline_playbook(cls, data: Any) -> Any:
        # An inline playbook needs no match keywords or team of its own.
        if isinstance(data, dict) and isinstance(data.get("playbook"), dict):
            book = {"match": {}, "team": data.get("team", ""), "id": data.get("id", ""),
                    **data["playbook"]}
            data = {**data, "playbook": book}
        return data

    @property
    def wire(self) -> bool:
        """Needs the litellm path (some fault is injected on the wire)."""
        return any(f.wire for f in self.faults)

    def book(self) -> Playbook | None:
        """The scripted models' knowledge of this task: inline, else a bundled demo's."""
        return self.playbook or for_task(self.task)


def load(path: Path) -> Scenario:
    """One scenario file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return Scenario.model_validate(data)


def load_suite(suite: Path = SUITE_DIR, pattern: str | None = None) -> list[Scenario]:
    """Every scenario of a suite directory, sorted by id, optionally filtered by a glob
    (or substring) on the id or category; commas separate alternatives."""
    found = [load(p) for p in sorted(suite.glob("*.yaml"))]
    ids = [s.id for s in found]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate scenario ids: {dupes}")
    if pattern:
        found = [s for s in found if _matches(s, pattern)]
    return sorted(found, key=lambda s: s.id)


def _matches(s: Scenario, patterns: str) -> bool:
    return any(_match_one(s, p.strip()) for p in patterns.split(",") if p.strip())


def _match_one(s: Scenario, pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatch(s.id, pattern) or fnmatch.fnmatch(s.category, pattern)
    return pattern in s.id or pattern == s.category


Trajectory.model_rebuild()
