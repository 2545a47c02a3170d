"""Budgets: reservation before each call, downgrade, stop with a best-effort answer, warnings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.config.settings import BudgetsConfig
from app.llm.budget import RunBudget, TenantSpend
from app.services import open_services
from app.storage.db import SqliteDatabase
from app.storage.store import LedgerRow, Store
from graphs.errors import BudgetExhausted
from graphs.ports import ModelRequest
from tests.app.llm.conftest import Harness
from tests.conftest import make_settings
from tests.fakes import EventLog

DEMO = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


async def test_budget_exhausted_mid_run_ends_with_best_effort_answer(tmp_path: Path) -> None:
    cap = 0.0015
    base = make_settings(tmp_path / "data")
    # Short answers keep each call's reserved worst case small next to the cap.
    models = [m.model_copy(update={"max_tokens": 256}) for m in base.models]
    settings = base.model_copy(update={"models": models})
    async with open_services(settings) as services:
        result = await services.runner.start(DEMO, "support", budget_usd=cap)
        ledger = services.store.ledger(result.run_id)
        events = services.store.events(result.run_id)

    assert result.status == "error"  # ended, with an answer, but without doing its task
    assert result.stop_reason == "budget_exhausted"
    assert result.final_answer  # best effort: what was done, never empty
    spent = sum(r["cost_usd"] for r in ledger)
    assert spent == pytest.approx(result.cost_usd)
    assert spent <= cap  # worst cases were reserved, so not even one call overshoots
    assert ledger[0]["role"] == "manager.plan"
    assert "budget downgrade large→small" in ledger[0]["route_reason"]
    warnings = [e["data"] for e in events if e["type"] == "budget_warning"]
    assert [(w["scope"], w["unit"]) for w in warnings] == [("run", "usd")]
    assert warnings[0]["fraction"] >= 0.8


def _spent(store: Store, run_id: str, tenant: str, usd: float) -> None:
    store.create_run(run_id, "t-" + run_id, "support", "task", tenant=tenant)
    store.ledger_put(
        LedgerRow(
            run_id=run_id,
            call_key="plan/a0",
            thread_id="t-" + run_id,
            tenant=tenant,
            role="manager.plan",
            agent=None,
            model="scripted-large",
            tier="large",
            route_reason="test",
            prompt_tokens=100,
            completion_tokens=100,
            cached_tokens=0,
            cost_usd=usd,
            latency_ms=1.0,
            outcome="ok",
        ),
        {"content": "x", "model": "m"},
    )


def test_budget_tenant_daily_cap_counts_every_run_of_the_tenant(tmp_path: Path) -> None:
    store = Store(SqliteDatabase(tmp_path / "foreman.db"))
    _spent(store, "r-earlier", "acme", 0.009)
    tenants = TenantSpend(store, limit_usd=0.01)
    config = BudgetsConfig()

    def run_budget(tenant: str) -> RunBudget:
        return RunBudget(config, tenant=tenant, tenants=tenants, events=EventLog())

    acme, acme_again, globex = run_budget("acme"), run_budget("acme"), run_budget("globex")
    held = acme.reserve(0.0008, 10)
    with pytest.raises(BudgetExhausted, match="tenant 'acme' daily budget"):
        acme_again.reserve(0.0008, 10)  # the other run's call in flight counts too
    globex.reserve(0.005, 10)
    acme.release(held)
    acme_again.reserve(0.0008, 10)
    store.close()


def test_tenant_spend_adds_local_settlements_and_rereads_the_ledger(tmp_path: Path) -> None:
    store = Store(SqliteDatabase(tmp_path / "foreman.db"))
    _spent(store, "r-earlier", "acme", 0.004)
    now = [1_000_000.0]
    tenants = TenantSpend(store, limit_usd=0.01, clock=lambda: now[0], refresh_s=1.0)
    budget = RunBudget(BudgetsConfig(), tenant="acme", tenants=tenants, events=EventLog())

    assert tenants.spent("acme") == pytest.approx(0.004)
    _spent(store, "r-elsewhere", "acme", 0.003)  # another process's call, not seen yet
    held = budget.reserve(0.002, 10)
    budget.settle(held, 0.002, 10)  # settled here: counted at once
    assert tenants.spent("acme") == pytest.approx(0.006)
    with pytest.raises(BudgetExhausted, match="tenant 'acme' daily budget"):
        budget.reserve(0.0045, 10)
    now[0] += 1.0
    # Re-read: the other process's 0.003 appears; this process's call is not in the
    # ledger (settle does not write it), so only the ledger's rows count.
    assert tenants.spent("acme") == pytest.approx(0.007)
    assert tenants.headroom("acme") == pytest.approx(0.003)
    store.close()


def test_budget_reservations_hold_until_settled(tmp_path: Path) -> None:
    store = Store(SqliteDatabase(tmp_path / "foreman.db"))
    events = EventLog()
    budget = RunBudget(
        BudgetsConfig(run_usd=1.0, run_tokens=1000),
        tenant="t",
        tenants=TenantSpend(store, None),
        events=events,
    )

    first = budget.reserve(0.6, 100)
    with pytest.raises(BudgetExhausted, match="run budget"):
        budget.reserve(0.5, 100)  # the first call is still in flight
    budget.settle(first, 0.1, 50)
    second = budget.reserve(0.5, 100)
    budget.settle(second, 0.75, 100)

    assert budget.spent_usd == pytest.approx(0.85)
    assert [w["unit"] for w in events.of("budget_warning")] == ["usd"]
    with pytest.raises(BudgetExhausted, match="token budget"):
        budget.reserve(0.01, 900)
    store.close()


def test_budget_rounds_and_wall_time_spare_the_final_answer(tmp_path: Path) -> None:
    store = Store(SqliteDatabase(tmp_path / "foreman.db"))
    now = [0.0]
    budget = RunBudget(
        BudgetsConfig(run_rounds=2, run_wall_s=60),
        tenant="t",
        tenants=TenantSpend(store, None),
        events=EventLog(),
        clock=lambda: now[0],
    )

    def call(role: str, rnd: int) -> ModelRequest:
        return ModelRequest(role=role, messages=[], call_key="k", signals={"round": rnd})

    budget.check_limits(call("manager.progress", 2))
    with pytest.raises(BudgetExhausted, match="round budget"):
        budget.check_limits(call("manager.progress", 3))
    now[0] = 61.0
    with pytest.raises(BudgetExhausted, match="wall-time"):
        budget.check_limits(call("specialist.billing", 1))
    budget.check_limits(call("manager.final", 3))
    store.close()


def test_budget_router_raises_when_no_tier_fits(harness: Callable[..., Harness]) -> None:
    h = harness(budgets={"run_usd": 0.00001})
    request = ModelRequest(
        role="manager.plan", call_key="plan/a0", messages=[{"role": "user", "content": "Plan it."}]
    )

    with pytest.raises(BudgetExhausted, match="cannot cover"):
        h.router.route(request, h.run.budget)
