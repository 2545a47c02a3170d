"""Graph state: JSON-shaped TypedDicts, kept compact so checkpoints stay small.

The lists that grow as a run goes on (``results``, ``established``, a specialist's
``messages``) and the task ledger are ``DeltaChannel`` s: the writes that change them are
stored once, with the step that made them, a checkpoint carries their value only when it
snapshots it, and LangGraph rebuilds the value from the saver's history (the writes since
the nearest snapshot) when a checkpoint is loaded. The rest of the state is small and is
stored whole in every checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, NotRequired, TypedDict

from langgraph.channels.delta import DeltaChannel
from langgraph.types import Overwrite


def append_writes(current: list[Any], writes: Sequence[Iterable[Any]]) -> list[Any]:
    """Reducer of an append-only list: each write is a list of new items, appended in order.

    Returns a new list (a node may still hold the old one). Deterministic and the same however
    the writes are batched, as ``DeltaChannel`` requires: folding ``xs`` then ``ys`` gives
    the list that folding ``xs + ys`` at once does.
    """
    out = list(current)
    for items in writes:
        out.extend(items)
    return out


def last_write(current: Any, writes: Sequence[Any]) -> Any:
    """Reducer of a value each write replaces whole: the last write wins (batching-invariant
    too: the last of ``xs + ys`` is the last of ``ys``, or of ``xs`` when ``ys`` is empty)."""
    return writes[-1] if writes else current


def new_messages(*messages: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """A write of ``messages`` to a specialist's append-only ``messages`` channel.

    A tuple, not a list: LangGraph gives the messages written to a ``DeltaChannel`` ids, and
    so turns role dicts *in a list* into LangChain message objects; a tuple is stored as it
    is (and reads back as a list of the same dicts), which keeps the model port's plain
    OpenAI-style dicts.
    """
    return messages


# A delta channel snapshots its whole value into a checkpoint after this many updates, which
# bounds how far back a load has to replay; a run has one update per manager round.
LIST_SNAPSHOT_EVERY = 100


class PlanStep(TypedDict):
    """One step of the plan, owned by one agent, after its dependencies."""

    id: str
    agent: str
    goal: str
    depends_on: list[str]
    dropped: NotRequired[str]  # why the manager dropped it
    drop_evidence: NotRequired[str]  # what in the record justified it (see graphs/drops.py)


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
    changes: NotRequired[list[str]]  # what Foreman repaired or added, for the plan view


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
    # why it never ran: denied | rejected | not_allowed | invalid | repeated (see repeats.py)
    refused: NotRequired[str]
    about: NotRequired[list[str]]  # which of the step's ids its arguments or result mention


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
    # done | blocked | needs_input | unclear (prose that is neither clearly done nor blocked)
    status: NotRequired[str]
    report: NotRequired[dict[str, Any]]  # the ids, figures and facts the agent reported


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
    # Rewritten whole by plan, a reviewer's edit and replan only (and by final, see
    # ``settled``): each new ledger is stored with its write and once as a snapshot, so a
    # load never replays past the latest one.
    ledger: Annotated[TaskLedger, DeltaChannel(last_write, snapshot_frequency=1)]
    round: int
    stall_count: int
    replans: int
    results: Annotated[list[StepResult],
                       DeltaChannel(append_writes, snapshot_frequency=LIST_SNAPSHOT_EVERY)]
    established: Annotated[list[Fact],
                           DeltaChannel(append_writes, snapshot_frequency=LIST_SNAPSHOT_EVERY)]
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
    plan_since: int  # the round after which the current ledger was written


def settled(state: ManagerState) -> dict[str, Any]:
    """Writes that store the manager's delta channels whole in a run's last checkpoint.

    Written by the final node: a finished thread (the one most read, by the API and by the
    thread's next run) then loads from that checkpoint alone instead of replaying the run's
    writes. An ``Overwrite`` (of the same value) is what makes LangGraph snapshot a
    ``DeltaChannel``; the ledger snapshots on every write anyway.
    """
    return {"results": Overwrite(list(state.get("results", []))),
            "established": Overwrite(list(state.get("established", []))),
            "ledger": state["ledger"]}


class DelegateInput(TypedDict):
    """The payload ``Send`` hands to one parallel delegation."""

    round: int
    index: int
    step_id: str
    agent: str
    instruction: str
    brief: str
    about: NotRequired[list[str]]  # the ids the step is about (see graphs/grounding.py)


class PendingCall(TypedDict):
    """A tool call of the last assistant message, not yet answered. ``approved_rule`` is set
    on a call an approver edited: the edit is their approval within that rule's scope."""

    id: str
    name: str
    arguments: str
    approved_rule: NotRequired[str]


class FailedCall(TypedDict):
    """The first outcome of a tool call that was refused (``executed`` false) or failed, kept
    so that the same call repeated in the step is answered from it (graphs/repeats.py)."""

    call_id: str
    reason: str
    executed: bool
    repeats: int


class SpecialistState(TypedDict, total=False):
    """One specialist's private loop; the manager only ever sees its summary."""

    round: int
    index: int
    step_id: str
    agent: str
    instruction: str
    brief: str  # read once, into the system message; cleared after the first model call
    about: list[str]  # the ids the step is about: a done needs a tool call involving one
    # Append-only: think, refuse and act return just the messages they add.
    messages: Annotated[list[dict[str, Any]],
                        DeltaChannel(append_writes, snapshot_frequency=LIST_SNAPSHOT_EVERY)]
    steps: int
    queue: list[PendingCall]
    cleared: dict[str, Any] | None
    tools_used: list[ToolTrace]
    arg_errors: int  # malformed tool calls in this step (an escalation signal)
    fresh_arg_errors: int  # ... since the last model call
    nudges: int  # replies sent back for lacking a report or holding a tool call as text
    failed_calls: dict[str, FailedCall]  # by call fingerprint (tool + arguments)
    summary: str
    ok: bool
    status: str  # done | blocked | needs_input | unclear
    report: dict[str, Any]
