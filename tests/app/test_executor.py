"""Exactly-once tool execution: DONE replays, STARTED is reconciled, never re-run blindly."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from app.runs.executor import LedgerExecutor
from app.storage.db import SqliteDatabase
from app.storage.store import Store
from graphs.ports import ToolInvocation
from tests.fakes import demo_registry
from tools import catalog, sandbox
from tools.demo import context as demo_context
from tools.spec import args_sha256

REFUND = {"order_id": "O-5002", "amount_usd": 189.0, "reason": "broken"}


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Store, Path, LedgerExecutor]:
    store = Store(SqliteDatabase(tmp_path / "foreman.db"))
    box = tmp_path / "sandbox.db"
    sandbox.reset(box)
    return store, box, LedgerExecutor(store, demo_registry(box))


def invocation(key: str = "t-1:call_1", tool: str = "issue_refund",
               args: dict[str, Any] | None = None) -> ToolInvocation:
    return ToolInvocation(key=key, thread_id="t-1", agent="billing", tool=tool,
                          args=args or REFUND)


def refunds(box: Path) -> int:
    conn = sandbox.connect(box)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM refunds").fetchone()[0])
    finally:
        conn.close()


async def test_executor_done_call_replays_stored_result(parts: Any) -> None:
    _store, box, executor = parts
    first = await executor.execute(invocation())
    second = await executor.execute(invocation())
    assert first.ok and not first.replayed
    assert second.replayed and second.data == first.data
    assert refunds(box) == 1


async def test_executor_started_write_that_landed_is_adopted_not_rerun(parts: Any) -> None:
    store, box, executor = parts
    # A crash between the sandbox commit and the ledger's DONE: the write landed.
    store.tool_started("t-1:call_1", "t-1", "billing", "issue_refund", args_sha256(REFUND))
    spec = catalog.get_tool("issue_refund")
    spec.run(demo_context(box, "t-1:call_1"), spec.validate(REFUND))

    outcome = await executor.execute(invocation())

    assert outcome.ok and outcome.data["reconciled"] is True
    assert refunds(box) == 1
    assert store.tool_get("t-1:call_1")["status"] == "DONE"


async def test_executor_started_write_that_never_landed_runs_once(parts: Any) -> None:
    store, box, executor = parts
    store.tool_started("t-1:call_1", "t-1", "billing", "issue_refund", args_sha256(REFUND))

    outcome = await executor.execute(invocation())

    assert outcome.ok and "reconciled" not in outcome.data
    assert refunds(box) == 1


async def test_executor_unverifiable_write_is_escalated_not_rerun(
        parts: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store, box, executor = parts
    blind = dataclasses.replace(catalog.get_tool("issue_refund"), reconcile=None)
    monkeypatch.setitem(executor.registry._specs, "issue_refund", blind)
    store.tool_started("t-1:call_1", "t-1", "billing", "issue_refund", args_sha256(REFUND))

    outcome = await executor.execute(invocation())

    assert not outcome.ok and outcome.data["needs_human"] is True
    assert refunds(box) == 0
