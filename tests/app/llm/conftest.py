"""Routers wired to respx-mocked OpenAI-compatible deployments (no network, real litellm)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import respx

from app.config.settings import BudgetsConfig, ModelEntry, RoutingConfig, Settings
from app.llm.journal import Journal
from app.llm.litellm_provider import LiteLLMProvider
from app.llm.router import Router, RunRouter
from app.llm.scripted import ScriptedProvider
from app.storage.db import SqliteDatabase
from app.storage.store import Store
from tests.conftest import make_settings
from tests.fakes import EventLog, FakeClock

KEY_ENV = "FOREMAN_TEST_LLM_KEY"
# Three OpenAI-compatible deployments on made-up hosts: two small, one large.
HOSTS = {
    "small-a": "http://small-a.test/v1",
    "small-b": "http://small-b.test/v1",
    "large": "http://large.test/v1",
}


def deployments() -> list[ModelEntry]:
    """The test catalog: real litellm ids (priced from its map) on respx-mocked hosts."""
    online = [
        ModelEntry(
            name="small-a",
            litellm_model="openai/gpt-4o-mini",
            tier="small",
            api_base=HOSTS["small-a"],
            api_key_env=KEY_ENV,
        ),
        ModelEntry(
            name="small-b",
            litellm_model="openai/gpt-4o-mini",
            tier="small",
            api_base=HOSTS["small-b"],
            api_key_env=KEY_ENV,
        ),
        ModelEntry(
            name="large",
            litellm_model="openai/gpt-4o",
            tier="large",
            api_base=HOSTS["large"],
            api_key_env=KEY_ENV,
        ),
    ]
    scripted = [
        ModelEntry(
            name="scripted-small",
            litellm_model="scripted/small",
            tier="small",
            input_cost_per_mtok=0.15,
            output_cost_per_mtok=0.6,
        ),
        ModelEntry(
            name="scripted-large",
            litellm_model="scripted/large",
            tier="large",
            input_cost_per_mtok=2.5,
            output_cost_per_mtok=10.0,
        ),
    ]
    return online + scripted


def online_settings(
    data_dir: Path, budgets: dict[str, Any] | None = None, **routing: Any
) -> Settings:
    """Online settings on the test catalog; backoff waits kept tiny."""
    fallbacks = {
        "max_retries": 1,
        "backoff_base_s": 0.001,
        "backoff_max_s": 0.01,
        "jitter": 0.0,
        "retry_after_max_s": 1.0,
        **routing.pop("fallbacks", {}),
    }
    config = RoutingConfig.model_validate(
        {
            "roles": {
                "manager.plan": "large",
                "manager.progress": "small-a",
                "manager.verify": "small-a",
                "manager.final": "large",
                "specialist": "small-a",
            },
            "offline": {"small": "scripted-small", "large": "scripted-large"},
            "fallbacks": fallbacks,
            **routing,
        }
    )
    return make_settings(
        data_dir,
        offline=False,
        models=deployments(),
        routing=config,
        budgets=BudgetsConfig.model_validate(budgets or {}),
    )


@dataclass
class Harness:
    """A router, its store, one run's port on it, and what the run emitted."""

    router: Router
    store: Store
    run: RunRouter
    events: EventLog
    clock: FakeClock

    def ledger(self) -> list[dict[str, Any]]:
        return self.store.ledger(self.run.journal.run_id)

    def new_run(self, run_id: str, tenant: str = "default") -> RunRouter:
        self.store.create_run(run_id, "t-" + run_id, "support", "task", tenant=tenant)
        return self.router.for_run(Journal(self.store, run_id, "t-" + run_id, tenant), self.events)


@pytest.fixture
def mock_llm() -> Iterator[respx.MockRouter]:
    """respx at the OpenAI wire level; any request without a route fails the test."""
    os.environ[KEY_ENV] = "sk-test-not-a-real-key"
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """``harness(**routing)`` → a fresh router and one run on the test catalog."""
    stores: list[Store] = []

    def build(budgets: dict[str, Any] | None = None, **routing: Any) -> Harness:
        data_dir = tmp_path / f"data{len(stores)}"
        settings = online_settings(data_dir, budgets, **routing)
        store = Store(SqliteDatabase(data_dir / "foreman.db"))
        stores.append(store)
        clock = FakeClock()
        router = Router(
            settings,
            {"litellm": LiteLLMProvider(), "scripted": ScriptedProvider()},
            offline=False,
            store=store,
            clock=clock,
        )
        events = EventLog()
        h = Harness(router, store, None, events, clock)  # type: ignore[arg-type]
        h.run = h.new_run("r-test")
        return h

    yield build
    for store in stores:
        store.close()
