"""Build every long-lived piece from settings, once, for the CLI, the server and tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.config.settings import Settings
from app.errors import ConfigError
from app.governance.approvals import ApprovalService
from app.governance.killswitch import KillSwitch, KillSwitchGate, SwitchState
from app.governance.policy.gate import PolicyEngine
from app.knowledge.embed import Embedder, make_embedder
from app.knowledge.runtime import KnowledgeRuntime
from app.llm.litellm_provider import LiteLLMProvider
from app.llm.playbook import PlaybookError, use_playbooks
from app.llm.provider import Provider
from app.llm.router import Router, is_offline
from app.llm.scripted import ScriptedProvider
from app.observability import telemetry
from app.runs.runner import Runner
from app.storage.checkpoint import open_saver
from app.storage.db import open_database
from app.storage.store import Store
from app.tooling.mcp_client import McpConnection
from app.tooling.toolbox import Toolbox, open_toolbox
from graphs.ports import PolicyGate
from tools.registry import ToolRegistry

if TYPE_CHECKING:
    from app.knowledge.memory import ChromaMemory
    from app.knowledge.store import KnowledgeStore


@dataclass(frozen=True)
class Services:
    """The composed application."""

    settings: Settings
    store: Store
    runner: Runner
    router: Router
    offline: bool
    sandbox: str  # the demo pack's sandbox: a SQLite path or a PostgreSQL URL
    kb: KnowledgeRuntime
    switch: KillSwitch
    approvals: ApprovalService
    toolbox: Toolbox

    @property
    def registry(self) -> ToolRegistry:
        """Every tool this process can run."""
        return self.toolbox.registry

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
                        embedder: Embedder | None = None,
                        connections: list[McpConnection] | None = None,
                        ) -> AsyncIterator[Services]:
    """Open storage, checkpointer, router and knowledge store; close them when the block ends.

    ``settings.database_url`` moves the app tables and the checkpoints to Postgres. On first
    start (no chunks for the default tenant) the bundled knowledge bases are ingested, unless
    ``knowledge.ingest_bundled`` is off.
    """
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        use_playbooks([settings.project_path(p) for p in settings.offline_world.playbooks])
    except PlaybookError as e:
        raise ConfigError(f"{settings.source}: offline.playbooks: {e}") from e
    # MCP servers' processes take seconds to start: they connect while the rest opens.
    connecting = asyncio.create_task(open_toolbox(settings, connections), name="open-toolbox")
    for _ in range(5):  # let the connects spawn their processes before the sync work below
        await asyncio.sleep(0)
    toolbox: Toolbox | None = None
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
    telemetry.configure(settings)
    kb = KnowledgeRuntime(settings.knowledge, data_dir,
                          embedder or make_embedder(settings.knowledge), store)
    try:
        async with open_saver(settings.database_url, data_dir, pool.pool_min_size,
                              pool.pool_max_size, pool.sqlite_synchronous) as saver:
            toolbox = await connecting
            demo = toolbox.registry.source_settings("pack:demo")
            sandbox = str(demo.get("db_url") or demo.get("db_path") or data_dir / "sandbox.db")
            policy = gate or PolicyEngine(settings.policy, settings.source)
            checked = KillSwitchGate(policy, switch)
            runner = Runner(settings, store, saver, router, checked, toolbox.registry,
                            knowledge=kb, secrets=toolbox.secrets)
            approvals = ApprovalService(settings, store, runner, checked)
            yield Services(settings, store, runner, router, offline, sandbox, kb, switch,
                           approvals, toolbox)
    finally:
        await kb.aclose()  # notes still queued behind the last runs get written
        if toolbox is None:
            await _discard(connecting)
        else:
            await toolbox.aclose()
        telemetry.shutdown()
        store.close()


async def _discard(connecting: asyncio.Task[Toolbox]) -> None:
    """Stop a toolbox that is still connecting, or close it if it got there."""
    if not connecting.done():
        connecting.cancel()
    try:
        box = await connecting
    except (Exception, asyncio.CancelledError):  # cancelled or failed: nothing left open
        return
    await box.aclose()
