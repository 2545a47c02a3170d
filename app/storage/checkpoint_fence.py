"""Checkpoint writes fenced by the run's claim: a process that lost its claim cannot commit a
LangGraph checkpoint (nor a step's pending writes) after another owner took the run over.

The runner drives a run's graph inside :func:`fenced_checkpoints`, which names the claim in
a context variable that LangGraph's checkpoint tasks inherit. The savers of
``app.storage.checkpoint`` look it up on every write:

- PostgreSQL (``app.storage.checkpoint_pg.FencedPostgresSaver``): the write runs in one
  transaction that first takes the run's fence lock in shared mode and checks the epoch,
  so the check and the rows commit together. ``Store.claim_run`` takes the same lock
  exclusively before it bumps the epoch: a write that checked the old epoch commits before
  the takeover, and one that comes after sees the new epoch and is refused. The fence is
  an advisory lock rather than the run row's lock, so it never waits on (or holds up) the
  app store's writes of the run.
- SQLite (embedded, one process): the epoch is read before the write, which is enough when
  every claimant lives in the one process whose event loop runs both.

Before either, the fence's ``flush`` stores the events the run has queued
(``app.runs.events.QueuedRunEvents``): a checkpoint never gets ahead of its step's events.

A refused write raises ``LeaseLost``; the runner lets it end the run's task without writing
anything more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver


@dataclass(frozen=True)
class CheckpointFence:
    """The claim a run's checkpoint writes must still hold, how to check it outside a
    PostgreSQL transaction (raises ``LeaseLost``), and what must be stored before any
    checkpoint write (the run's queued events)."""

    run_id: str
    epoch: int
    check: Callable[[], Awaitable[None]]
    flush: Callable[[], Awaitable[None]] | None = None

    async def before_write(self) -> None:
        """Store what the checkpoint must not get ahead of."""
        if self.flush is not None:
            await self.flush()


_fence: ContextVar[CheckpointFence | None] = ContextVar("checkpoint_fence", default=None)


@contextmanager
def fenced_checkpoints(fence: CheckpointFence) -> Iterator[None]:
    """Checkpoint writes made inside the block (and its tasks) are fenced by ``fence``."""
    token = _fence.set(fence)
    try:
        yield
    finally:
        _fence.reset(token)


def current_fence() -> CheckpointFence | None:
    """The fence of the run whose graph runs here, if any."""
    return _fence.get()


class FencedSqliteSaver(AsyncSqliteSaver):
    """The SQLite saver, refusing writes once the run's claim is lost."""

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata, new_versions: ChannelVersions,
                   ) -> RunnableConfig:
        """Write a checkpoint while the claim holds."""
        await _check()
        return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        """Write a step's pending writes while the claim holds."""
        await _check()
        await super().aput_writes(config, writes, task_id, task_path)


async def _check() -> None:
    fence = _fence.get()
    if fence is not None:
        await fence.before_write()
        await fence.check()
