"""The tenant's daily cap across processes: two stores on one database (two processes'
worth of pools), reserving from many threads at once, never hold or settle past the cap."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config.settings import BudgetsConfig
from app.llm.budget import RunBudget, TenantSpend
from app.storage.db import PostgresDatabase, SqliteDatabase
from app.storage.store import LedgerRow, Store
from graphs.errors import BudgetExhausted
from tests.fakes import EventLog

CAP = 1.0
CALL = 0.1  # worst case of each call: ten fit under the cap


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    if request.param == "sqlite":
        pair = (Store(SqliteDatabase(tmp_path / "app.storage.db")),
                Store(SqliteDatabase(tmp_path / "app.storage.db")))
    else:
        url = request.getfixturevalue("pg_url")
        pair = (Store(PostgresDatabase(url)), Store(PostgresDatabase(url)))
    pair[0].create_thread("t-1", "acme")
    pair[0].create_run("r-1", "t-1", "support", "task", tenant="acme")
    yield pair
    for s in pair:
        s.close()


def _ledger(store: Store, key: str, usd: float) -> None:
    store.ledger_put(LedgerRow(
        run_id="r-1", call_key=key, thread_id="t-1", tenant="acme", role="worker", agent=None,
        model="m", tier="small", route_reason="test", prompt_tokens=1, completion_tokens=1,
        cached_tokens=0, cost_usd=usd, latency_ms=1.0, outcome="ok"), {"content": key})


def test_budget_shared_cap_holds_across_two_stores(stores: tuple[Store, Store]) -> None:
    spends = [TenantSpend(s, CAP) for s in stores]
    budgets = [RunBudget(BudgetsConfig(run_usd=None), tenant="acme", tenants=t,
                         events=EventLog()) for t in spends]
    held: list[tuple[int, object]] = []
    refused: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def call(i: int) -> None:
        side = i % 2
        start.wait()
        try:
            got = budgets[side].reserve(CALL, 10)
        except BudgetExhausted:
            with lock:
                refused.append(i)
            return
        with lock:
            held.append((side, got))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # Sixteen calls of 0.1 against a cap of 1.0, half through each store: exactly ten fit.
    assert len(held) == 10 and len(refused) == 6
    assert {side for side, _ in held} == {0, 1}  # both stores took part of the cap
    assert spends[0].held("acme") == pytest.approx(CAP)
    assert spends[1].headroom("acme") == pytest.approx(0.0)

    for n, (side, reservation) in enumerate(held):  # each call costs its whole worst case
        _ledger(stores[side], f"call-{n}", CALL)
        budgets[side].settle(reservation, CALL, 10)  # type: ignore[arg-type]
    assert spends[0].held("acme") == 0.0
    with pytest.raises(BudgetExhausted, match="tenant 'acme' daily budget"):
        budgets[1].reserve(0.000001, 1)  # settled spend now fills the cap
    assert stores[0].tenant_spend("acme", since=0) == pytest.approx(CAP)


def test_budget_shared_hold_of_a_dead_process_lapses(stores: tuple[Store, Store]) -> None:
    now = [1_000_000.0]
    dead = TenantSpend(stores[0], CAP, clock=lambda: now[0], hold_ttl_s=60)
    alive = TenantSpend(stores[1], CAP, clock=lambda: now[0], hold_ttl_s=60)
    dead.reserve("acme", 0.9)  # its process dies with the call in flight
    with pytest.raises(BudgetExhausted):
        alive.reserve("acme", 0.2)
    now[0] += 61
    assert alive.reserve("acme", 0.2)
    assert alive.held("acme") == pytest.approx(0.2)
