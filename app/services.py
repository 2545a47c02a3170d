"""Build every long-lived piece from settings, once, for the CLI, the server and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.approvals import ApprovalService
from app.checkpoint import open_saver
from app.db import open_database
from app.killswitch import KillSwitch, KillSwitchGate, SwitchState
from app.knowledge.embed import Embedder, make_embedder
from app.knowledge.runtime import KnowledgeRuntime
from app.llm.litellm_provider import LiteLLMProvider
from app.llm.provider import Provider
from app.llm.router import Router, is_offline
from app.llm.scripted import ScriptedProvider
from app.policy.gate import PolicyEngine
from app.runner import Runner
from app.settings import Settings
from app.store import Store
from graphs.ports import PolicyGate

if TYPE_CHECKING:
    from app.knowledge.store import KnowledgeStore
    from app.memory import ChromaMemory
from tools import sandbox


@dataclass(frozen=True)
class Services:
    """The composed application."""

    settings: Settings
    store: Store
    runner: Runner
    router: Router
    offline: bool
    sandbox_path: Path
    kb: KnowledgeRuntime
    switch: KillSwitch
    approvals: ApprovalService

    @property
    def knowledge(self) -> KnowledgeStore:
        """The knowledge store (waits until it has opened)."""
        return self.kb.store

    @property
    def memory(self) -> ChromaMemory:
        """Run memory (waits until it has opened)."""
        return self.kb.memory


@asynccontextmanager
async def open_services(settings: Settings, *, scripted: Provider | None = None,
                        gate: PolicyGate | None = None,
                        embedder: Embedder | None = None) -> AsyncIterator[Services]:
    """Open storage, checkpointer, router and knowledge store; close them when the block ends.

    ``settings.database_url`` moves the app tables and the checkpoints to Postgres. On first
    start (no chunks for the default tenant) the bundled knowledge bases are ingested, unless
    ``knowledge.ingest_bundled`` is off.
    """
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    sandbox_path = data_dir / "sandbox.db"
    sandbox.ensure(sandbox_path)
    pool = settings.storage
    store = Store(open_database(settings.database_url, data_dir / "foreman.db",
                                pool.pool_min_size, pool.pool_max_size,
                                pool.sqlite_synchronous))
    switch = KillSwitch(store, SwitchState(paused=settings.runs.paused,
                                           disabled_tools=frozenset(settings.runs.disabled_tools)))
    offline = is_offline(settings)
    providers: dict[str, Provider] = {
        "scripted": scripted or ScriptedProvider(latency_s=settings.scripted_latency_ms / 1000,
                                                 weak_roles=settings.scripted_weak_roles),
        "litellm": LiteLLMProvider(),
    }
    router = Router(settings, providers, offline, store)
    kb = KnowledgeRuntime(settings.knowledge, data_dir,
                          embedder or make_embedder(settings.knowledge))
    try:
        async with open_saver(settings.database_url, data_dir, pool.pool_min_size,
                              pool.pool_max_size, pool.sqlite_synchronous) as saver:
            policy = gate or PolicyEngine(settings.policy, settings.source)
            checked = KillSwitchGate(policy, switch)
            runner = Runner(settings, store, saver, router, checked, sandbox_path, knowledge=kb)
            approvals = ApprovalService(settings, store, runner, checked)
            yield Services(settings, store, runner, router, offline, sandbox_path, kb, switch,
                           approvals)
    finally:
        await kb.aclose()  # notes still queued behind the last runs get written
        store.close()
