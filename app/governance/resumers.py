"""How a decided run goes on: the resumers an approval decision hands its run to (in this
process and waited for, or a queue job deferred in the decision's transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Protocol, runtime_checkable

from app.runs.events import Listener
from app.runs.runner import Runner, RunResult
from app.storage.db import Cursor
from app.storage.store import RunRow


class Resumer(Protocol):
    """Continues a run after its decisions are recorded."""

    def check(self, run: RunRow) -> None:
        """Raise ``Conflict`` when the run cannot be resumed now (e.g. its thread is busy)."""

    async def resume(self, run: RunRow, decisions: dict[str, Any]) -> None:
        """Resume the run with ``{interrupt_id: decision}``."""


@runtime_checkable
class DeferredResume(Resumer, Protocol):
    """A resumer whose resume is a queue job, deferred inside the caller's transaction."""

    def resume_in(self, c: Cursor, run: RunRow, decisions: dict[str, Any]) -> None:
        """Mark the run pending and defer its resume with ``decisions``, inside ``c``."""


@runtime_checkable
class AdmittingResume(Resumer, Protocol):
    """A resumer that admits one start, resume or cancel of a thread at a time (the server's
    run manager): a decision holds that from its check to its resume."""

    def admitting(self, thread_id: str) -> AbstractAsyncContextManager[None]:
        """Hold the thread's admission lock for the block."""


def admitting(resumer: Resumer, thread_id: str) -> AbstractAsyncContextManager[None]:
    """The resumer's admission lock of the thread, when it has one."""
    return resumer.admitting(thread_id) if isinstance(resumer, AdmittingResume) else nullcontext()


class InlineResume:
    """Resumes in this process and waits (the CLI): ``result`` is how the run went on."""

    def __init__(self, runner: Runner, listeners: Sequence[Listener] = ()) -> None:
        self.runner = runner
        self.listeners = list(listeners)
        self.result: RunResult | None = None

    def check(self, run: RunRow) -> None:
        """Nothing else runs here."""

    async def resume(self, run: RunRow, decisions: dict[str, Any]) -> None:
        """Resume and wait until the run ends or pauses again."""
        self.result = await self.runner.resume(run.thread_id, decisions, self.listeners,
                                               run_id=run.id)
