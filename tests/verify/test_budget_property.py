"""Budgets as a property: whatever the order of parallel reservations, settlements and
failures, settled spend never passes the run cap or the tenant's daily cap.

A rule-based state machine drives the real RunBudget and TenantSpend: calls reserve their
worst case, settle for any real cost up to it (the router never settles more than it
reserved a worst case for), or fail and release. The tenant's ledger and holds are a real
store (SQLite in memory), read on a clock the machine advances.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from app.config.settings import BudgetsConfig
from app.llm.budget import Reservation, RunBudget, TenantSpend
from app.storage.db import SqliteDatabase
from app.storage.store import LedgerRow, Store
from graphs.errors import BudgetExhausted
from tests.verify.record import record, scale

RUN_CAP = 1.0
TENANT_CAP = 1.2  # below the two run caps together, so it binds
# Large worst cases and full-cost settlements are where caps break: draw them often.
WORST = st.one_of(st.sampled_from([0.3, 0.45, 0.6]), st.floats(0.0001, 0.6))
SHARE = st.one_of(st.just(1.0), st.floats(0.0, 1.0))


class _Ledger:
    """Settled calls of one tenant, written to the store's cost ledger."""

    def __init__(self) -> None:
        self.store = Store(SqliteDatabase(Path(":memory:")))
        self.store.create_thread("t-1", "acme")
        self.store.create_run("r-1", "t-1", "support", "task", tenant="acme")
        self.costs: list[float] = []

    def write(self, cost: float) -> None:
        key = f"call-{len(self.costs)}"
        self.store.ledger_put(LedgerRow(
            run_id="r-1", call_key=key, thread_id="t-1", tenant="acme", role="worker",
            agent=None, model="m", tier="small", route_reason="test", prompt_tokens=1,
            completion_tokens=1, cached_tokens=0, cost_usd=cost, latency_ms=1.0,
            outcome="ok"), {"content": key})
        self.costs.append(cost)


class _Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def emit(self, type: str, data: Any) -> None:
        self.seen.append((type, data))


@dataclass
class _Call:
    """One model call in flight: which run, its worst case, what it holds."""

    run: int
    worst: float
    held: Reservation
    open: bool = True


class BudgetMachine(RuleBasedStateMachine):
    """Two runs of one tenant sharing a daily cap, each with its own run cap."""

    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000_000.0
        self.ledger = _Ledger()
        self.tenants = TenantSpend(self.ledger.store, TENANT_CAP,
                                   clock=lambda: self.now, refresh_s=1.0)
        config = BudgetsConfig(run_usd=RUN_CAP, tenant_daily_usd=TENANT_CAP)
        self.runs = [RunBudget(config, tenant="acme", tenants=self.tenants, events=_Events())
                     for _ in range(2)]
        self.settled = [0.0, 0.0]

    @rule(target=calls, run=st.integers(0, 1), worst=WORST)
    def reserve(self, run: int, worst: float) -> _Call | None:
        try:
            return _Call(run, worst, self.runs[run].reserve(worst, 100))
        except BudgetExhausted:
            return None

    @rule(call=calls, share=SHARE)
    def settle(self, call: _Call | None, share: float) -> None:
        if call is None or not call.open:
            return
        cost = call.worst * share
        self.ledger.write(cost)  # the ledger row is written before settle
        self.runs[call.run].settle(call.held, cost, 50)
        self.settled[call.run] += cost
        call.open = False

    @rule(call=calls)
    def fail(self, call: _Call | None) -> None:
        if call is None or not call.open:
            return
        self.runs[call.run].release(call.held)
        call.open = False

    @rule(seconds=st.floats(0.0, 3.0))
    def tick(self, seconds: float) -> None:
        self.now += seconds

    def teardown(self) -> None:
        self.ledger.store.close()

    @invariant()
    def caps_hold(self) -> None:
        for run, budget in enumerate(self.runs):
            assert abs(budget.spent_usd - self.settled[run]) < 1e-9
            assert budget.spent_usd + budget.reserved_usd <= RUN_CAP + 1e-9
        assert sum(self.ledger.costs) <= TENANT_CAP + 1e-9


def test_budget_caps_hold_under_any_interleaving() -> None:
    cases = scale(fast=200, full=2000)
    run_state_machine_as_test(BudgetMachine, settings=settings(
        max_examples=cases, stateful_step_count=40, deadline=None, database=None))
    record("budget interleavings", cases, 0,
           "settled spend never passes the run cap or the tenant's daily cap")
