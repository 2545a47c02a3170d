"""Runs tools exactly once per (thread, tool call id), whatever source the tool comes from."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from app.runs import crashpoints
from app.storage.store import Store
from app.storage.thread_keys import local_id
from graphs.ports import ToolExecutor, ToolInvocation, ToolOutcome
from tools.knowledge import KnowledgeSearch
from tools.registry import ToolRegistry
from tools.spec import (
    NoSecrets,
    Secrets,
    SideEffect,
    ToolContext,
    ToolError,
    ToolSpec,
    args_sha256,
    validation_message,
)

log = logging.getLogger(__name__)


def resolve_tool(registry: ToolRegistry, name: str) -> ToolSpec:
    """The spec a call runs; one seam for fault injection in evals."""
    return registry.get(name)


class LedgerExecutor(ToolExecutor):
    """Tool-call ledger around every tool: bundled, pack or MCP.

    DONE rows replay their stored result. A STARTED row without DONE means the process died
    mid-call: a write is first reconciled by its idempotency key (what the first attempt
    wrote is adopted); only a write proven not to have landed runs again; a write that
    cannot be checked is reported for a human, never re-executed blindly.
    """

    def __init__(self, store: Store, registry: ToolRegistry, tenant: str = "default",
                 knowledge: KnowledgeSearch | None = None, shadow: bool = False, *,
                 run_id: str = "", principal: str = "",
                 secrets: Secrets | None = None) -> None:
        self.store = store
        self.registry = registry
        self.shadow = shadow
        self.tenant = tenant
        self.knowledge = knowledge
        self.run_id = run_id
        self.principal = principal
        self.secrets = secrets or NoSecrets()
        # Ledger rows read by ``recorded``, kept for the ``execute`` of the same call that
        # follows it in the gate's pass (this run is the key's only writer meanwhile).
        self._looked: dict[str, dict[str, Any] | None] = {}

    def _context(self, spec: ToolSpec, invocation: ToolInvocation) -> ToolContext:
        return ToolContext(idempotency_key=invocation.key, tenant=self.tenant,
                           principal=self.principal, run_id=self.run_id,
                           thread_id=local_id(invocation.thread_id),
                           settings=self.registry.settings_of(spec), secrets=self.secrets,
                           knowledge=self.knowledge)

    async def recorded(self, key: str) -> bool:
        """The ledger holds a row for ``key``."""
        self._looked[key] = await self.store.db.call(self.store.tool_get, key)
        return self._looked[key] is not None

    async def execute(self, invocation: ToolInvocation) -> ToolOutcome:
        """Run (or replay, or reconcile) one cleared tool call; the ledger is read and
        written on the database's threads."""
        call = self.store.db.call
        if invocation.key in self._looked:
            row = self._looked.pop(invocation.key)
        else:
            row = await call(self.store.tool_get, invocation.key)
        if row is not None and row["status"] == "DONE":
            return ToolOutcome(ok=bool(row["ok"]), data=row["result"] or {}, replayed=True)
        try:
            spec = resolve_tool(self.registry, invocation.tool)
        except KeyError:
            return ToolOutcome(ok=False, data={"error": f"{invocation.tool} is not available "
                                                        "in this process"})
        ctx = self._context(spec, invocation)
        if row is None:
            await call(self.store.tool_started, invocation.key, invocation.thread_id,
                       invocation.agent, invocation.tool, args_sha256(invocation.args))
            crashpoints.hit("tool.started")
        elif spec.side_effect == SideEffect.WRITE and not self.shadow:
            settled = await self._reconcile(spec, ctx, invocation)
            if settled is not None:
                return settled
        try:
            args = spec.validate(invocation.args)
            if self.shadow and spec.side_effect == SideEffect.WRITE:
                # Shadow mode: record what would have been done; the system is untouched.
                data = {"shadow": True, "tool": spec.name, "args": args.model_dump(mode="json"),
                        "note": invocation.note, "executed": False,
                        "message": f"shadow mode: {spec.name} was not executed"}
            else:
                data = await spec.arun(ctx, args)
                crashpoints.hit("tool.applied")
            ok = True
        except ToolError as e:
            data, ok = {"error": str(e)}, False
        except ValidationError as e:  # nothing was sent: the arguments did not fit the schema
            data, ok = {"error": f"{spec.name}: invalid arguments, not sent: "
                                 f"{validation_message(e)}"}, False
        except Exception as e:  # a broken tool must not kill the run; the model sees the error
            log.exception("tool raised", extra={"tool": invocation.tool})
            data, ok = {"error": f"{invocation.tool} failed: {type(e).__name__}"}, False
        await call(self.store.tool_done, invocation.key, ok, data)
        crashpoints.hit("tool.done")
        return ToolOutcome(ok=ok, data=data, replayed=bool(data.get("replayed")))

    async def _reconcile(self, spec: ToolSpec, ctx: ToolContext,
                         invocation: ToolInvocation) -> ToolOutcome | None:
        """Settle an unconfirmed write; None when it provably never landed."""
        if spec.reconcile is None:
            return await self._needs_human(spec, invocation, "cannot be checked automatically")
        try:
            found = await spec.areconcile(ctx)
        except Exception as e:  # the check itself failed: only a human can tell now
            log.warning("reconcile failed", extra={"tool": spec.name, "error": type(e).__name__,
                                                   "thread_id": invocation.thread_id})
            return await self._needs_human(spec, invocation, "could not be checked just now")
        if found is None:
            log.info("unconfirmed write had not landed; running it",
                     extra={"tool": spec.name, "thread_id": invocation.thread_id})
            return None
        data = {**found, "reconciled": True}
        await self.store.db.call(self.store.tool_done, invocation.key, True, data)
        crashpoints.hit("tool.done")
        return ToolOutcome(ok=True, data=data, replayed=True)

    async def _needs_human(self, spec: ToolSpec, invocation: ToolInvocation,
                           why: str) -> ToolOutcome:
        data = {"error": f"{spec.name} may or may not have run before a crash and {why}; "
                         "a human must verify it", "needs_human": True}
        await self.store.db.call(self.store.tool_done, invocation.key, False, data)
        return ToolOutcome(ok=False, data=data)
