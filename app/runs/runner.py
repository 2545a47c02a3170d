"""Starting, resuming and finishing runs: the one place a graph is compiled and invoked."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphRecursionError
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Overwrite

from app.config.settings import Settings
from app.errors import NotFound, RunStateError, StorageError
from app.knowledge.runtime import KnowledgeRuntime, LazyKnowledge, TenantMemory
from app.llm.journal import Journal
from app.llm.litellm_provider import litellm_ready
from app.llm.router import Router
from app.observability.run_trace import traced
from app.runs.claims import Claim, LeaseLost
from app.runs.events import Listener, QueuedRunEvents, RunEvents, SystemClock
from app.runs.executor import LedgerExecutor
from app.runs.fencing import FencedStore
from app.runs.pauses import Interrupt, record_pause
from app.runs.teams import team_spec
from app.storage.checkpoint import prune_finished
from app.storage.checkpoint_fence import fenced_checkpoints
from app.storage.db import Cursor
from app.storage.store import RunRow, Store
from app.storage.thread_keys import local_id
from graphs.manager import build_graph, recursion_limit
from graphs.ports import GateDecision, GateRequest, PolicyGate, RunContext
from graphs.views import ENDINGS
from tools.registry import ToolRegistry
from tools.spec import Secrets

log = logging.getLogger(__name__)
OWNER = f"{socket.gethostname()}:{os.getpid()}"  # who claims runs executed in this process
RUN_KEY = "foreman_run_id"  # checkpoint metadata: the run whose invocation wrote it
FINISHED = object()  # resume payload of a run whose graph already reached its end


def new_thread_id() -> str:
    """A fresh thread id."""
    return f"t-{uuid.uuid4().hex[:12]}"


def new_run_id() -> str:
    """A fresh run id."""
    return f"r-{uuid.uuid4().hex[:12]}"


def fresh_input(task: str) -> dict[str, Any]:
    """Graph input for a new task; a follow-up on a thread starts without the last task's
    step results (``results`` is append-only, so it has to be overwritten; the overwrite
    also stores it whole, empty, in the run's first checkpoint)."""
    return {"task": task, "results": Overwrite([]), "notes": [], "evidence": []}


@dataclass(frozen=True)
class RunResult:
    """How a run call ended."""

    run_id: str
    thread_id: str
    status: str  # success (task done) | interrupted | error (failed or not done)
    final_answer: str | None = None
    stop_reason: str | None = None
    cost_usd: float = 0.0
    model_calls: int = 0
    interrupts: list[Interrupt] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class TenantThreadGate:
    """The policy gate as a run's graph calls it: the graph knows its thread by its key, a
    gate sees the id the tenant gave it (the tenant is a field of its own)."""

    gate: PolicyGate

    def check(self, request: GateRequest) -> GateDecision:
        """The wrapped gate's decision on the request, thread named as its tenant does."""
        return self.gate.check(replace(request, thread_id=local_id(request.thread_id)))


class Runner:
    """Compiles one graph per team with the checkpointer and runs threads on it."""

    def __init__(self, settings: Settings, store: Store, saver: BaseCheckpointSaver[Any],
                 router: Router, gate: PolicyGate, registry: ToolRegistry, *,
                 knowledge: KnowledgeRuntime | None = None,
                 secrets: Secrets | None = None) -> None:
        self.settings = settings
        self.store = store
        self.saver = saver
        self.router = router
        self.gate = gate
        self.registry = registry
        self.secrets = secrets
        self.knowledge = knowledge
        self._graphs: dict[str, CompiledStateGraph[Any, Any, Any, Any]] = {}
        self._limits: dict[str, int] = {}
        self._built_for = registry.version

    def graph(self, team: str) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The compiled graph of a team (built again once the registry's tools change)."""
        if self._built_for != self.registry.version:  # an MCP server connected later
            self._graphs.clear()
            self._built_for = self.registry.version
        if team not in self._graphs:
            # Built once: the team spec reads its agents' prompt files.
            spec = team_spec(self.settings, team, self.registry)
            self._graphs[team] = build_graph(spec).compile(checkpointer=self.saver)
            self._limits[team] = recursion_limit(spec)
        return self._graphs[team]

    def create(self, task: str, team: str | None = None, thread_id: str | None = None, *,
               tenant: str = "default", created_by: str | None = None,
               metadata: Mapping[str, Any] | None = None, run_id: str | None = None,
               budget_usd: float | None = None, shadow: bool = False,
               exclusive: bool = False, then: Callable[[Cursor], object] | None = None) -> RunRow:
        """Record a pending run (and its thread, if new) without starting it.

        ``budget_usd`` replaces the configured per-run USD budget for this run; ``shadow``
        makes write tools record what they would do instead of doing it. ``exclusive`` and
        ``then`` are :meth:`Store.create_run`'s (the busy-thread check, the job enqueued in
        the run row's transaction).
        """
        if shadow:
            metadata = {**(metadata or {}), "mode": "shadow"}
        team = team or self.settings.default_team
        self.graph(team)  # fail on a bad team before anything is recorded
        # The thread's key: ``thread_id`` is the tenant's id for it (or already its key).
        thread_id = self.store.ensure_thread(thread_id or new_thread_id(), tenant)
        run_id = run_id or new_run_id()
        self.store.create_run(run_id, thread_id, team, task, tenant=tenant,
                              created_by=created_by, metadata=metadata, budget_usd=budget_usd,
                              exclusive=exclusive, then=then)
        run = self.store.get_run(run_id)
        assert run is not None
        return run

    def claimed(self, run: RunRow, claim: Claim | None) -> FencedStore:
        """The store as the run's claim sees it (claiming the run here when not given)."""
        taken = claim or self.store.claim_run(run.id, OWNER)
        if not isinstance(taken, Claim):
            raise NotFound(f"no run {run.id!r}")
        return FencedStore(self.store, taken)

    async def execute(self, run_id: str, listeners: Sequence[Listener] | None = None,
                      claim: Claim | None = None) -> RunResult:
        """Start a pending run from its task (under ``claim``, or a claim taken here)."""
        call = self.store.db.call
        run = await call(self.store.get_run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}")
        store = await call(self.claimed, run, claim)
        events = QueuedRunEvents(store, run.id, listeners)
        events.emit("run_started", {
            "thread_id": local_id(run.thread_id), "team": run.team, "task": run.task,
            "policy": self.settings.routing.policy, "mode": run.metadata.get("mode", "live"),
            "budget_usd": run.budget_usd or self.settings.budgets.run_usd})
        return await self._drive(run.id, run.thread_id, run.team, fresh_input(run.task), events,
                                 store)

    async def start(self, task: str, team: str | None = None, thread_id: str | None = None,
                    listeners: Sequence[Listener] | None = None, *,
                    budget_usd: float | None = None, tenant: str = "default",
                    shadow: bool = False, created_by: str | None = None) -> RunResult:
        """Run a new task on a (new or given) thread until it ends or pauses."""
        run = self.create(task, team, thread_id, tenant=tenant, budget_usd=budget_usd,
                          shadow=shadow, created_by=created_by)
        return await self.execute(run.id, listeners)

    async def resume(self, thread_id: str, decision: Any = None,
                     listeners: Sequence[Listener] | None = None,
                     run_id: str | None = None, claim: Claim | None = None) -> RunResult:
        """Continue a run (default: the thread's latest): after a crash, or with a decision."""
        call = self.store.db.call
        run = await (call(self.store.get_run, run_id) if run_id
                     else call(self.store.latest_run, thread_id))
        if run is None or run.thread_id != thread_id:
            raise NotFound(f"no run on thread {local_id(thread_id)!r}")
        if run.status == "success" or (run.status == "error" and run.stop_reason):
            raise RunStateError(
                f"run {run.id} on thread {local_id(thread_id)} already finished")
        store = await call(self.claimed, run, claim)
        events = QueuedRunEvents(store, run.id, listeners)
        payload: Any
        if decision is not None:
            payload = Command(resume=decision)
        else:
            # Read the state only here: a decision never needs it, and loading a paused
            # thread replays its delta channels.
            snapshot = await self.graph(run.team).aget_state(self.config(thread_id, run.team))
            # Decisions settled before a crash, not applied yet: resume with them (re-running
            # the paused node would ask again for what was already decided).
            decision = await call(self.store.settled_decisions,
                                  run.id, [i.id for i in snapshot.interrupts]) or None
            if decision:
                payload = Command(resume=decision)
            elif snapshot.next or snapshot.tasks:
                # Continue from the last checkpoint: tasks left to run, or tasks whose writes
                # were stored before their step's checkpoint (``next`` omits those).
                payload = None
            elif (snapshot.metadata or {}).get(RUN_KEY) == run.id:
                # The graph finished this run before the process stopped: only the ending
                # (status, answer, events) is left to record; starting over would redo it.
                payload = FINISHED
            else:  # no checkpoint of this run was written: start it over
                payload = fresh_input(run.task)
        events.emit("run_resumed", {"thread_id": local_id(thread_id),
                                    "with_decision": decision is not None})
        return await self._drive(run.id, thread_id, run.team, payload, events, store)

    async def pending_interrupts(self, thread_id: str, team: str) -> list[Interrupt]:
        """The thread's interrupts awaiting a decision, from its last checkpoint."""
        snapshot = await self.graph(team).aget_state(self.config(thread_id, team))
        return [Interrupt(i.id, i.value) for i in snapshot.interrupts]

    def config(self, thread_id: str, team: str) -> RunnableConfig:
        """The graph config of a thread: its id and the superstep budget."""
        self.graph(team)
        return {"configurable": {"thread_id": thread_id},
                "recursion_limit": self._limits[team]}

    async def _drive(self, run_id: str, thread_id: str, team: str, payload: Any,
                     events: QueuedRunEvents, store: FencedStore) -> RunResult:
        """Run the graph and record how it ended. Every store step goes through
        ``Database.call``, and the run's events are stored before each of its other writes
        (status, approvals) and before each checkpoint (``events.flush``)."""
        try:
            return await self._graph_run(run_id, thread_id, team, payload, events, store)
        except asyncio.CancelledError:  # what the run emitted is stored before whoever
            await _quietly(events.flush())  # cancelled it records the cancel
            raise

    async def _graph_run(self, run_id: str, thread_id: str, team: str, payload: Any,
                         events: QueuedRunEvents, store: FencedStore) -> RunResult:
        call = self.store.db.call
        graph = self.graph(team)
        config = self.config(thread_id, team)
        run = await call(self.store.get_run, run_id)
        tenant = run.tenant if run else "default"
        kb = self.knowledge
        shadow = bool(run and run.metadata.get("mode") == "shadow")
        journal = Journal(store, run_id, thread_id, tenant)
        router = await call(self.router.for_run, journal, events, run.budget_usd if run else None)
        memory = TenantMemory(kb, tenant) if kb else None
        context = traced(RunContext(  # on the loop: the trace id goes into the run's context
            router=router,
            tools=LedgerExecutor(store, self.registry, tenant=tenant,
                                 knowledge=LazyKnowledge(kb) if kb else None, shadow=shadow,
                                 run_id=run_id, principal=(run.created_by or "") if run else "",
                                 secrets=self.secrets),
            gate=TenantThreadGate(self.gate), events=events, clock=SystemClock(),
            memory=memory, tenant=tenant, shadow=shadow,
            keep_step_history=not self.settings.prune_checkpoints), run_id, thread_id, team,
            events)
        await events.flush()
        await call(store.update_run, run_id, status="running")
        try:
            if payload is not FINISHED:
                await litellm_ready()  # every model call counts tokens with it
                with fenced_checkpoints(store.checkpoint_fence(events.flush)):
                    await graph.ainvoke(payload, {**config, "metadata": {RUN_KEY: run_id}},
                                        context=context, durability="sync")
            if memory is not None:  # the thread's next run, on any process, recalls
                await memory.flush(thread_id)  # what this one noted
            await events.flush()
        except (LeaseLost, StorageError):  # another owner has the run, or the database is
            raise  # gone: write nothing more here (the run goes on from its checkpoint)
        except GraphRecursionError as e:
            return await self._fail(run_id, thread_id, events, f"superstep limit reached: {e}")
        except Exception as e:  # the run fails; the process and other runs carry on
            log.exception("run failed", extra={"run_id": run_id, "thread_id": thread_id})
            return await self._fail(run_id, thread_id, events, f"{type(e).__name__}: {e}")
        snapshot = await graph.aget_state(config)
        totals = await call(self.store.totals, run_id)
        pending = [Interrupt(i.id, i.value) for i in snapshot.interrupts]
        if pending and run is not None:
            await call(self._record_pause, store, run, pending, snapshot.values,
                       totals.cost_usd, events)
            await call(store.update_run, run_id, status="interrupted")
            return RunResult(run_id, thread_id, "interrupted", cost_usd=totals.cost_usd,
                             model_calls=totals.calls, interrupts=pending)
        values = snapshot.values
        answer, reason = values.get("final_answer"), values.get("stop_reason")
        if shadow:
            answer = (answer or "") + shadow_report(
                await call(self.store.events, run_id, 0, 100_000))
        status, error = outcome(reason)
        usage = {"model_calls": totals.calls, "prompt_tokens": totals.prompt_tokens,
                 "completion_tokens": totals.completion_tokens}
        if error is None:
            kind, data = "run_completed", {
                "final_answer": answer, "stop_reason": reason, "cost_usd": totals.cost_usd,
                "usage": usage}
        else:
            kind, data = "run_failed", {
                "reason": error, "stop_reason": reason, "final_answer": answer,
                "cost_usd": totals.cost_usd, "usage": usage}
        await events.flush()  # what the run emitted goes before its closing event
        seq = await call(store.finish_run, run_id, kind, data, status=status,
                         final_answer=answer, stop_reason=reason, error=error)
        events.notify(seq, kind, data)
        if self.settings.prune_checkpoints:
            await prune_finished(self.saver, thread_id)
        return RunResult(run_id, thread_id, status, final_answer=answer, stop_reason=reason,
                         cost_usd=totals.cost_usd, model_calls=totals.calls, error=error)

    def _record_pause(self, store: Store, run: RunRow, pending: list[Interrupt],
                      values: Mapping[str, Any], cost_usd: float, events: RunEvents) -> None:
        """One approval row (and ``approval_requested`` event) per new pending interrupt."""
        record_pause(store, run, pending, values, cost_usd, events,
                     self.settings.runs.approval_ttl_s)

    async def _fail(self, run_id: str, thread_id: str, events: QueuedRunEvents,
                    reason: str) -> RunResult:
        call = self.store.db.call
        await events.flush()
        data = {"reason": reason}
        seq = await call(events.store.finish_run, run_id, "run_failed", data,
                         status="error", error=reason)
        events.notify(seq, "run_failed", data)
        totals = await call(self.store.totals, run_id)
        return RunResult(run_id, thread_id, "error", cost_usd=totals.cost_usd,
                         model_calls=totals.calls, error=reason)


async def _quietly(flushing: Awaitable[None]) -> None:
    """Await a flush whose failure must not replace the error being handled."""
    try:
        await flushing
    except Exception as e:
        log.warning("events of a stopped run not stored", extra={"error": type(e).__name__})


def outcome(stop_reason: str | None) -> tuple[str, str | None]:
    """A finished run's status and error: ``success`` only when its task was done (stop
    reason ``satisfied``); any other ending is ``error``, saying how it ended."""
    if stop_reason == "satisfied":
        return "success", None
    reason = stop_reason or "unknown"
    return "error", f"the run ended without completing its task: {ENDINGS.get(reason, reason)}"


def shadow_report(events: list[dict[str, Any]]) -> str:
    """The final answer's list of what a shadow run's write tools would have done."""
    lines = []
    for e in events:
        result = e["data"].get("result") if e["type"] == "tool_result" else None
        if isinstance(result, dict) and result.get("shadow"):
            note = f" - {result['note']}" if result.get("note") else ""
            lines.append(f"- {result['tool']} {json.dumps(result['args'], sort_keys=True)}{note}")
    if not lines:
        return "\n\nShadow mode: nothing was changed, and no write action was attempted."
    return ("\n\nShadow mode: nothing was changed. These actions would have been taken:\n"
            + "\n".join(lines))
