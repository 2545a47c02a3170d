"""The per-tenant per-day spend counter: written with each cost-ledger row, equal to the
day's ledger sum, new each UTC day, rebuilt for today on a database from before it."""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.llm.budget import TenantSpend
from app.storage import cost_ledger
from app.storage.db import Database, PostgresDatabase, SqliteDatabase
from app.storage.store import LedgerRow, Store
from graphs.errors import BudgetExhausted

DAY = 86400
T0 = 1_800_000_000.0 - 1_800_000_000.0 % DAY + DAY - 5  # five seconds before a UTC midnight


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    opened: list[Store] = []

    def open_store() -> Store:
        db: Database = (SqliteDatabase(tmp_path / "app.storage.db") if request.param == "sqlite"
                        else PostgresDatabase(request.getfixturevalue("pg_url")))
        opened.append(Store(db))
        return opened[-1]

    yield open_store
    for s in opened:
        s.close()


def _row(tenant: str, key: str, usd: float, outcome: str = "ok") -> LedgerRow:
    return LedgerRow(run_id="r-1", call_key=key, thread_id="t-1", tenant=tenant,
                     role="worker", agent=None, model="m", tier="small", route_reason="test",
                     prompt_tokens=1, completion_tokens=1, cached_tokens=0, cost_usd=usd,
                     latency_ms=1.0, outcome=outcome)


def _counters(store: Store) -> dict[tuple[str, int], float]:
    return {(r["tenant"], int(r["day"])): float(r["usd"])
            for r in store.db.query("SELECT * FROM tenant_day_spend")}


def _ledger_by_day(store: Store) -> dict[tuple[str, int], float]:
    out: dict[tuple[str, int], float] = {}
    for r in store.db.query("SELECT tenant, cost_usd, created_at FROM model_calls"):
        key = (r["tenant"], cost_ledger.utc_day(float(r["created_at"])))
        out[key] = out.get(key, 0.0) + float(r["cost_usd"])
    return out


def test_spend_counter_equals_the_ledger_after_mixed_writes(
        opener: object, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [T0]
    monkeypatch.setattr(cost_ledger, "time", types.SimpleNamespace(time=lambda: clock[0]))
    a, b = opener(), opener()  # type: ignore[operator]
    a.create_thread("t-1", "acme")
    a.create_run("r-1", "t-1", "support", "task", tenant="acme")
    a.ledger_put(_row("acme", "c1", 0.10), {"content": "x"})
    b.ledger_put(_row("acme", "c2", 0.05), {"content": "y"})
    b.ledger_put(_row("globex", "c3", 0.20), {"content": "z"})
    a.ledger_put(_row("acme", "c4#1", 0.01, outcome="error"), None)  # a failed attempt costs
    with a.db.tx() as c:  # inside a caller's transaction, as the journal writes it
        a.ledger_in(c, _row("acme", "c5", 0.02), {"content": "w"})
    b.ledger_put(_row("acme", "c1", 0.10), {"content": "x"})  # a replay: first write won
    today = cost_ledger.utc_day(T0)
    assert _counters(a) == pytest.approx({("acme", today): 0.18, ("globex", today): 0.20})
    assert _counters(a) == pytest.approx(_ledger_by_day(a))

    clock[0] = T0 + 10  # past midnight: a new counter, yesterday's left as it was
    a.ledger_put(_row("acme", "c6", 0.03), {"content": "v"})
    assert _counters(b) == pytest.approx({("acme", today): 0.18, ("globex", today): 0.20,
                                          ("acme", today + DAY): 0.03})
    assert _counters(b) == pytest.approx(_ledger_by_day(b))

    # The cap reads today's counter only: yesterday's 0.18 no longer counts.
    spend = TenantSpend(b, limit_usd=0.1, clock=lambda: clock[0])
    assert spend.reserve("acme", 0.07)
    with pytest.raises(BudgetExhausted):
        spend.reserve("acme", 0.001)


def test_spend_counter_is_rebuilt_for_today_on_an_older_database(opener: object) -> None:
    old = opener()  # type: ignore[operator]
    old.create_thread("t-1", "acme")
    old.create_run("r-1", "t-1", "support", "task", tenant="acme")
    old.ledger_put(_row("acme", "c1", 0.25), {"content": "x"})
    old.ledger_put(_row("acme", "c2", 0.5), {"content": "y"})
    with old.db.tx() as c:  # as a database from before the counter
        c.run("DROP TABLE tenant_day_spend")
        if old.db.dialect == "postgres":  # whose recorded schema was an older one
            c.run("UPDATE foreman_schema SET fingerprint = 'older'")
    reopened = opener()  # type: ignore[operator]
    assert _counters(reopened) == pytest.approx(_ledger_by_day(reopened))
    assert sum(_counters(reopened).values()) == pytest.approx(0.75)
    opener()  # type: ignore[operator]  # a second start adds nothing
    assert sum(_counters(reopened).values()) == pytest.approx(0.75)
    with pytest.raises(BudgetExhausted):
        TenantSpend(reopened, limit_usd=1.0).reserve("acme", 0.3)
