"""Graph state: JSON-shaped TypedDicts, kept compact so checkpoints stay small."""

from __future__ import annotations

import operator
from typing import Annotated, Any, NotRequired, TypedDict


class PlanStep(TypedDict):
    """One step of the plan, owned by one agent, after its dependencies."""

    id: str
    agent: str
    goal: str
    depends_on: list[str]


class Facts(TypedDict):
    """What the manager knows and does not know yet."""

    given: list[str]
    to_look_up: list[str]
    to_derive: list[str]
    guesses: list[str]


class TaskLedger(TypedDict):
    """Facts and plan; rewritten on replan."""

    facts: Facts
    plan: list[PlanStep]


class NextStep(TypedDict):
    """A delegation decided by the progress ledger."""

    step_id: str
    agent: str
    instruction: str


class ToolTrace(TypedDict):
    """What a specialist did with one tool call (for loop detection and evals)."""

    name: str
    args_sha256: str
    ok: bool
    result_sha256: str


class StepResult(TypedDict):
    """A specialist's compact report back to the manager."""

    round: int
    step_id: str
    agent: str
    instruction: str
    summary: str
    ok: bool
    tools: list[ToolTrace]
    fingerprint: str


class Fact(TypedDict):
    """A fact an agent established, with provenance: who, in which step, from which tool
    results (``name@result_sha256``), and how far it may be trusted."""

    text: str
    agent: str
    step_id: str
    round: int
    tools: list[str]
    trust: str


class ManagerState(TypedDict, total=False):
    """The manager loop's state."""

    task: str
    ledger: TaskLedger
    round: int
    stall_count: int
    replans: int
    results: Annotated[list[StepResult], operator.add]
    established: Annotated[list[Fact], operator.add]
    notes: list[str]
    evidence: list[str]
    last_progress: dict[str, Any]
    started_at: float
    final_answer: str
    stop_reason: str
    last_failure: str  # "stall" | "verifier_rejected" | "": an escalation signal
    rejections: int
    budget_resume: str  # the node to go back to when a budget extension is approved
    budget_extensions: int


class DelegateInput(TypedDict):
    """The payload ``Send`` hands to one parallel delegation."""

    round: int
    index: int
    step_id: str
    agent: str
    instruction: str
    brief: str


class PendingCall(TypedDict):
    """A tool call of the last assistant message, not yet answered. ``approved_rule`` is set
    on a call an approver edited: the edit is their approval within that rule's scope."""

    id: str
    name: str
    arguments: str
    approved_rule: NotRequired[str]


class SpecialistState(TypedDict, total=False):
    """One specialist's private loop; the manager only ever sees its summary."""

    round: int
    index: int
    step_id: str
    agent: str
    instruction: str
    brief: str
    messages: list[dict[str, Any]]
    steps: int
    queue: list[PendingCall]
    cleared: dict[str, Any] | None
    tools_used: list[ToolTrace]
    arg_errors: int  # malformed tool calls in this step (an escalation signal)
    fresh_arg_errors: int  # ... since the last model call
    summary: str
    ok: bool
