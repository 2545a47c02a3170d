"""One process of the crash sweep: what `foreman serve` does at start, then drive one task to
its end, approving what it asks for.

``python -m tests.verify.crash_driver CONFIG TASK_ID THREAD_ID``, with ``FOREMAN_DATA_DIR`` set. The
first process records and starts the task; any later one (after a kill) is a restart: the
expiry sweep and ``RunManager.recover`` exactly as the server's lifespan runs them, then the
same loop. Pending approvals are decided through the approvals service by an approver of the
rule's group, as ``POST /v1/approvals/{id}/decision`` would. Every provider call's key and
the sending pid are appended to ``calls.log`` in the data dir, or to ``FOREMAN_SWEEP_CALLS``
(the truth about what was paid for).

Exit codes: 0 the run ended (any terminal status), 4 it is stuck (interrupted with nothing
left to decide, or still active after the loop), 5 no progress within the bound.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import app.services
from app.api.auth import Principal
from app.config.settings import load_settings
from app.llm.scripted import ScriptedProvider
from app.runs.broker import EventBroker
from app.runs.run_manager import TERMINAL, RunManager
from app.services import open_services
from graphs.ports import ModelRequest
from tests.fakes import HashingEmbedder
from tests.verify.crash_tasks import TASKS

STUCK, NO_PROGRESS = 4, 5


class LoggedProvider(ScriptedProvider):
    """The scripted models; each call's key and the sending process's pid are appended to a
    file before it answers."""

    def __init__(self, log: Path, latency_s: float) -> None:
        super().__init__(latency_s=latency_s)
        self.log = log

    async def complete(self, model: object, request: ModelRequest) -> object:  # type: ignore[override]
        with self.log.open("a", encoding="utf-8") as f:
            f.write(f"{request.call_key} {os.getpid()}\n")
        return await super().complete(model, request)  # type: ignore[arg-type]


def calls_log(data_dir: Path) -> Path:
    """Where provider calls are logged: the data dir's ``calls.log``, or the file
    ``FOREMAN_SWEEP_CALLS`` names (one file for every process of a distributed world)."""
    return Path(os.environ.get("FOREMAN_SWEEP_CALLS") or data_dir / "calls.log")


async def drive(config: str, task_id: str, thread: str) -> int:
    task = TASKS[task_id]
    settings = load_settings(config)
    provider = LoggedProvider(calls_log(settings.data_dir), 0.0)
    async with open_services(settings, scripted=provider) as services:
        manager = RunManager(services, EventBroker())
        await manager.open()
        try:
            store = services.store
            await services.approvals.sweep(manager)
            if not store.runs_with_status("pending", "running", "interrupted", *TERMINAL):
                manager.start(task=task.text, team=task.team, thread_id=thread,
                              tenant=task.tenant, created_by="alice")
            else:
                manager.recover()
            approver = Principal("bob", task.tenant, frozenset({"approver"}),
                                 groups=frozenset({task.group}))
            for _ in range(20):
                for run_id in list(manager._tasks):
                    await manager.wait(run_id)
                run = store.latest_run(store.key_of(task.tenant, thread))
                if run is None:
                    return STUCK
                if run.status in TERMINAL:
                    return 0
                pending = [a for a in store.run_approvals(run.id) if a.status == "pending"]
                if run.status != "interrupted" or not pending:
                    print(f"stuck: run {run.status}, approvals "
                          f"{[(a.id, a.status) for a in store.run_approvals(run.id)]}",
                          file=sys.stderr)
                    return STUCK
                await services.approvals.decide(approver, pending[0].id, "approve", manager)
            return NO_PROGRESS
        finally:
            await manager.close()


def main() -> None:
    config, task_id, thread = sys.argv[1], sys.argv[2], sys.argv[3]
    os.environ.setdefault("FOREMAN_KNOWLEDGE__INGEST_BUNDLED", "false")
    # The sweep's tasks search no knowledge base: skip loading the embedding model.
    app.services.make_embedder = lambda config: HashingEmbedder()  # type: ignore[assignment]
    sys.exit(asyncio.run(drive(config, task_id, thread)))


if __name__ == "__main__":
    main()
