"""LangGraph-Platform-shaped views of threads, runs and checkpoints (JSON dicts).

The async views read the app store off the event loop (:meth:`Api.off_loop`) and the
checkpoints on it (the checkpointer is async); the sync ones are called off the loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from langgraph.types import StateSnapshot

from app.api.deps import Api, assistant_uuid
from app.storage.cost_ledger import Totals
from app.storage.store import RunRow, ThreadRow
from app.storage.thread_keys import local_id


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC timestamp."""
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def messages(runs: list[RunRow]) -> list[dict[str, Any]]:
    """The thread as a conversation: each run's task, then its answer."""
    out: list[dict[str, Any]] = []
    for r in runs:
        out.append({"type": "human", "content": r.task, "id": f"{r.id}-task"})
        if r.final_answer:
            out.append({"type": "ai", "content": r.final_answer, "id": f"{r.id}-answer"})
    return out


def values(snapshot: StateSnapshot | None, runs: list[RunRow]) -> dict[str, Any]:
    """The thread's values: graph state plus ``messages``."""
    state = dict(snapshot.values) if snapshot is not None else {}
    return {**state, "messages": messages(runs)}


def interrupts_by_task(snapshot: StateSnapshot | None) -> dict[str, list[dict[str, Any]]]:
    """``thread.interrupts``: task id → ``[{id, value}]``."""
    if snapshot is None:
        return {}
    return {t.id: [{"id": i.id, "value": i.value} for i in t.interrupts]
            for t in snapshot.tasks if t.interrupts}


async def snapshot_of(api: Api, thread_id: str, runs: list[RunRow]) -> StateSnapshot | None:
    """The thread's latest checkpoint (None before its first run)."""
    if not runs:
        return None
    runner = api.services.runner
    team = runs[-1].team
    return await runner.graph(team).aget_state(runner.config(thread_id, team))


def thread_status(busy: bool, runs: list[RunRow], snapshot: StateSnapshot | None) -> str:
    """``idle | busy | interrupted | error`` as the Platform reports it."""
    if busy:
        return "busy"
    if snapshot is not None and snapshot.interrupts:
        return "interrupted"
    if runs and runs[-1].status == "error":
        return "error"
    return "idle"


async def thread_json(api: Api, thread: ThreadRow) -> dict[str, Any]:
    """A Platform ``Thread``."""
    runs = await api.off_loop(api.services.store.thread_runs, thread.key)
    snapshot = await snapshot_of(api, thread.key, runs)
    busy = await api.off_loop(api.manager.thread_busy, thread.key)
    return {
        "thread_id": thread.id,
        "created_at": iso(thread.created_at),
        "updated_at": iso(max([thread.updated_at, *(r.updated_at for r in runs)])),
        "metadata": thread.metadata,
        "status": thread_status(busy, runs, snapshot),
        "values": values(snapshot, runs),
        "interrupts": interrupts_by_task(snapshot),
        "config": {},
    }


def state_json(thread_id: str, snapshot: StateSnapshot,
               runs: list[RunRow]) -> dict[str, Any]:
    """A Platform ``ThreadState`` for one checkpoint."""
    cfg = snapshot.config.get("configurable", {})
    parent = (snapshot.parent_config or {}).get("configurable", {})
    return {
        "values": values(snapshot, runs),
        "next": list(snapshot.next),
        "tasks": [{"id": t.id, "name": t.name, "error": t.error,
                   "interrupts": [{"id": i.id, "value": i.value} for i in t.interrupts],
                   "checkpoint": None, "state": None, "result": t.result}
                  for t in snapshot.tasks],
        "checkpoint": {"thread_id": thread_id, "checkpoint_ns": cfg.get("checkpoint_ns", ""),
                       "checkpoint_id": cfg.get("checkpoint_id"), "checkpoint_map": None},
        "metadata": dict(snapshot.metadata or {}),
        "created_at": snapshot.created_at,
        "parent_checkpoint": ({"thread_id": thread_id, "checkpoint_ns": "",
                               "checkpoint_id": parent.get("checkpoint_id"),
                               "checkpoint_map": None} if parent else None),
        "interrupts": [{"id": i.id, "value": i.value} for i in snapshot.interrupts],
    }


def run_json(api: Api, run: RunRow, totals: Totals | None = None) -> dict[str, Any]:
    """A Platform ``Run``, with Foreman's figures under ``foreman`` (``totals`` read here when
    not given)."""
    totals = totals if totals is not None else api.services.store.totals(run.id)
    return {
        "run_id": run.id,
        "thread_id": local_id(run.thread_id),
        "assistant_id": assistant_uuid(run.team),
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "status": run.status,
        "metadata": run.metadata,
        "multitask_strategy": run.metadata.get("multitask_strategy", "reject"),
        "kwargs": {},
        "foreman": {"team": run.team, "cost_usd": totals.cost_usd,
                    "model_calls": totals.calls, "stop_reason": run.stop_reason,
                    "final_answer": run.final_answer, "error": run.error},
    }


async def wait_result(api: Api, run: RunRow) -> dict[str, Any]:
    """What ``runs.wait`` / ``join`` return: final values, ``__interrupt__`` or ``__error__``."""
    if run.status == "error" and not run.final_answer:
        return {"__error__": {"error": "RunError", "message": run.error or "run failed"}}
    runs = await api.off_loop(api.services.store.thread_runs, run.thread_id)
    snapshot = await snapshot_of(api, run.thread_id, runs)
    out = values(snapshot, runs)
    if run.status == "error":  # ended without doing its task: its answer, and the error
        out["__error__"] = {"error": "RunError", "message": run.error or "run failed"}
    if snapshot is not None and snapshot.interrupts:
        out["__interrupt__"] = [{"id": i.id, "value": i.value} for i in snapshot.interrupts]
    return out
