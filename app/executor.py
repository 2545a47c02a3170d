"""Runs tools against the sandbox exactly once per (thread, tool call id)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from app.store import Store
from graphs.ports import ToolExecutor, ToolInvocation, ToolOutcome
from tools.catalog import get_tool
from tools.knowledge import KnowledgeSearch
from tools.spec import SideEffect, ToolContext, ToolError, ToolSpec, args_sha256

log = logging.getLogger(__name__)


class SandboxExecutor(ToolExecutor):
    """Tool-call ledger around the tool implementations.

    DONE rows replay their stored result. A STARTED row without DONE means the process died
    mid-call: a write is first reconciled against the sandbox by its idempotency key (what
    the first attempt wrote is adopted); only a write proven not to have landed runs again;
    a write that cannot be checked is reported for a human, never re-executed blindly.
    """

    def __init__(self, store: Store, sandbox_path: Path, tenant: str = "default",
                 knowledge: KnowledgeSearch | None = None, shadow: bool = False) -> None:
        self.store = store
        self.shadow = shadow
        self.sandbox_path = sandbox_path
        self.tenant = tenant
        self.knowledge = knowledge

    async def execute(self, invocation: ToolInvocation) -> ToolOutcome:
        """Run (or replay, or reconcile) one cleared tool call."""
        row = self.store.tool_get(invocation.key)
        if row is not None and row["status"] == "DONE":
            return ToolOutcome(ok=bool(row["ok"]), data=row["result"] or {}, replayed=True)
        spec = get_tool(invocation.tool)
        ctx = ToolContext(db_path=str(self.sandbox_path), idempotency_key=invocation.key,
                          tenant=self.tenant, knowledge=self.knowledge)
        if row is None:
            self.store.tool_started(invocation.key, invocation.thread_id, invocation.agent,
                                    invocation.tool, args_sha256(invocation.args))
        elif spec.side_effect == SideEffect.WRITE and not self.shadow:
            settled = await self._reconcile(spec, ctx, invocation)
            if settled is not None:
                return settled
        try:
            args = spec.validate(invocation.args)
            if self.shadow and spec.side_effect == SideEffect.WRITE:
                # Shadow mode: record what would have been done; the sandbox is untouched.
                data = {"shadow": True, "tool": spec.name, "args": args.model_dump(mode="json"),
                        "note": invocation.note, "executed": False,
                        "message": f"shadow mode: {spec.name} was not executed"}
            else:
                data = await asyncio.to_thread(spec.run, ctx, args)
            ok = True
        except ToolError as e:
            data, ok = {"error": str(e)}, False
        except Exception as e:  # a broken tool must not kill the run; the model sees the error
            log.exception("tool raised", extra={"tool": invocation.tool})
            data, ok = {"error": f"{invocation.tool} failed: {type(e).__name__}"}, False
        self.store.tool_done(invocation.key, ok, data)
        return ToolOutcome(ok=ok, data=data, replayed=bool(data.get("replayed")))

    async def _reconcile(self, spec: ToolSpec, ctx: ToolContext,
                         invocation: ToolInvocation) -> ToolOutcome | None:
        """Settle an unconfirmed write; None when it provably never landed."""
        if spec.reconcile is None:
            data = {"error": f"{spec.name} may or may not have run before a crash and cannot "
                             "be checked automatically; a human must verify it",
                    "needs_human": True}
            self.store.tool_done(invocation.key, False, data)
            return ToolOutcome(ok=False, data=data)
        found = await asyncio.to_thread(spec.reconcile, ctx)
        if found is None:
            log.info("unconfirmed write had not landed; running it",
                     extra={"tool": spec.name, "thread_id": invocation.thread_id})
            return None
        data = {**found, "reconciled": True}
        self.store.tool_done(invocation.key, True, data)
        return ToolOutcome(ok=True, data=data, replayed=True)
