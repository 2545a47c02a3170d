"""The store as one claim of a run sees it: every write of that run names the claim's epoch.

``FencedStore`` is what the runner hands the run's journal, tool-call ledger, events and
status updates. Each write checks the epoch in its own transaction (``Store.fence`` or a
conditional update) and raises ``LeaseLost`` once another owner has claimed the run, so a
stale owner cannot commit a model call, a tool result, an event or a status; the journal
read before each model call checks it too, so a stale owner stops before it pays; its
``checkpoint_fence`` is what the run's LangGraph checkpoint writes check likewise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from app.runs.claims import Claim, LeaseLost
from app.storage.checkpoint_fence import CheckpointFence
from app.storage.cost_ledger import stored_response
from app.storage.db import Cursor
from app.storage.store import LedgerRow, Store


class FencedStore(Store):
    """A view of ``base`` whose writes of ``claim.run_id`` are conditional on its epoch."""

    def __init__(self, base: Store, claim: Claim) -> None:  # no super(): the schema is open
        self.db = base.db
        self.base = base
        self.claim = claim

    @property
    def epoch(self) -> int:
        """The claim's fencing token."""
        return self.claim.epoch

    def checkpoint_fence(self, flush: Callable[[], Awaitable[None]] | None = None,
                         ) -> CheckpointFence:
        """What the run's checkpoint writes check (see ``app.storage.checkpoint_fence``),
        after ``flush`` (the run's queued events)."""
        return CheckpointFence(self.claim.run_id, self.epoch, self._acheck_epoch, flush)

    async def _acheck_epoch(self) -> None:
        await self.db.call(self._check_epoch)

    def _check_epoch(self) -> None:
        row = self.db.one("SELECT epoch FROM runs WHERE id = ?", (self.claim.run_id,))
        if row is None or int(row["epoch"]) != self.epoch:
            raise LeaseLost(f"run {self.claim.run_id} is no longer held at epoch "
                            f"{self.epoch}: checkpoint write refused")

    def _mine(self, run_id: str) -> bool:
        return run_id == self.claim.run_id

    def events_in(self, c: Cursor, run_id: str,
                  batch: Sequence[tuple[str, Mapping[str, Any], str | None]],
                  actor: str | None = None, *, epoch: int | None = None) -> list[int]:
        """Events of the claimed run carry (and check) the epoch."""
        return super().events_in(c, run_id, batch, actor,
                                 epoch=self.epoch if self._mine(run_id) else epoch)

    def update_run(self, run_id: str, *, epoch: int | None = None, **fields: Any) -> None:
        """Status updates of the claimed run are conditional on the epoch."""
        super().update_run(run_id, epoch=self.epoch if self._mine(run_id) else epoch, **fields)

    def finish_run(self, run_id: str, type: str, data: Mapping[str, Any], *,
                   epoch: int | None = None, **fields: Any) -> int:
        """The claimed run's ending, conditional on the epoch."""
        return super().finish_run(run_id, type, data,
                                  epoch=self.epoch if self._mine(run_id) else epoch, **fields)

    def tool_started(self, key: str, thread_id: str, agent: str, tool: str,
                     args_sha256: str) -> None:
        """The ledger's STARTED row, only while the claim holds."""
        with self.db.tx() as c:
            self.fence(c, self.claim.run_id, self.epoch)
            c.run("INSERT INTO tool_calls (key, thread_id, agent, tool, args_sha256, status,"
                  " started_at) VALUES (?, ?, ?, ?, ?, 'STARTED', ?)",
                  (key, thread_id, agent, tool, args_sha256, time.time()))

    def tool_done(self, key: str, ok: bool, result: Mapping[str, Any]) -> None:
        """The ledger's DONE row, only while the claim holds."""
        with self.db.tx() as c:
            self.fence(c, self.claim.run_id, self.epoch)
            c.run("UPDATE tool_calls SET status = 'DONE', ok = ?, result = ?, finished_at = ?"
                  " WHERE key = ?", (int(ok), json.dumps(result, default=str), time.time(), key))

    def journal_get(self, run_id: str, call_key: str) -> dict[str, Any] | None:
        """The journal's answer to a call of the claimed run, read with the run's epoch in
        the same query: a stale owner learns it lost the run here, before it sends (and pays
        for) a call the new owner makes too."""
        if not self._mine(run_id):
            return super().journal_get(run_id, call_key)
        row = self.db.one("SELECT r.epoch AS epoch, m.response AS response FROM runs r"
                          " LEFT JOIN model_calls m ON m.run_id = r.id AND m.call_key = ?"
                          " WHERE r.id = ?", (call_key, run_id))
        if row is None or int(row["epoch"]) != self.epoch:
            raise LeaseLost(f"run {run_id} is no longer held at epoch {self.epoch}: "
                            "model call not sent")
        return stored_response(row["response"])

    def ledger_put(self, row: LedgerRow, response: Mapping[str, Any] | None) -> None:
        """A journal row of the claimed run, only while the claim holds."""
        if not self._mine(row.run_id):
            super().ledger_put(row, response)
            return
        with self.db.tx() as c:
            self.fence(c, self.claim.run_id, self.epoch)
            self.ledger_in(c, row, response)
