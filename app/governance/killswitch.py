"""The kill switch: pause new runs, take tools out of service, cap concurrent runs.

Switches are scoped: a tenant's admin flips its own tenant's switches, an ``operator``
flips the platform-wide ones (scope ``*``), which hold for every tenant. The state lives
in the app database (table ``kill_switches``), so every API replica and worker reads the
same switches and a change takes effect at once everywhere; each change is written in the
same transaction as its audit entry, naming who made it. ``runs.paused`` and
``runs.disabled_tools`` in the config are the platform-wide state until an operator
changes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import Conflict
from app.storage.db import Database
from graphs.ports import GateAction, GateDecision, GateRequest, PolicyGate

PLATFORM = "*"
SWITCH_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS kill_switches (
        scope TEXT PRIMARY KEY,
        paused INTEGER NOT NULL,
        disabled_tools TEXT NOT NULL,
        max_concurrent_runs INTEGER,
        updated_by TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    # The per-tenant concurrency cap counts a tenant's active runs.
    "CREATE INDEX IF NOT EXISTS runs_tenant_status ON runs(tenant, status)",
]


@dataclass(frozen=True)
class SwitchState:
    """One scope's switches (a tenant's, or the platform's)."""

    paused: bool = False
    disabled_tools: frozenset[str] = frozenset()
    max_concurrent_runs: int | None = None
    updated_by: str | None = None
    updated_at: float | None = None


class SwitchRows:
    """Kill-switch table operations, mixed into the store (it must have ``runs``)."""

    db: Database

    def _switch_schema(self) -> None:
        with self.db.tx() as c:
            for statement in SWITCH_SCHEMA:
                c.run(statement)

    def get_switch(self, scope: str) -> SwitchState | None:
        """The stored switches of a scope, if any were ever set."""
        row = self.db.one("SELECT * FROM kill_switches WHERE scope = ?", (scope,))
        if row is None:
            return None
        return SwitchState(bool(row["paused"]), frozenset(json.loads(row["disabled_tools"])),
                           row["max_concurrent_runs"], row["updated_by"],
                           float(row["updated_at"]))

    def put_switch(self: Any, scope: str, state: SwitchState, audit_tenant: str,
                   actor: str) -> None:
        """Store a scope's switches with the audit entry that records the change."""
        now = time.time()
        tools = json.dumps(sorted(state.disabled_tools))
        with self.db.tx() as c:
            c.run("INSERT INTO kill_switches (scope, paused, disabled_tools,"
                  " max_concurrent_runs, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                  " ON CONFLICT (scope) DO UPDATE SET paused = excluded.paused,"
                  " disabled_tools = excluded.disabled_tools,"
                  " max_concurrent_runs = excluded.max_concurrent_runs,"
                  " updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                  (scope, int(state.paused), tools, state.max_concurrent_runs, actor, now))
            self.audit_append(c, audit_tenant, "kill_switch_changed", {
                "scope": "platform" if scope == PLATFORM else scope, "paused": state.paused,
                "disabled_tools": sorted(state.disabled_tools),
                "max_concurrent_runs": state.max_concurrent_runs}, actor=actor)

    def active_runs_of(self, tenant: str) -> int:
        """The tenant's queued and running runs (every process)."""
        row = self.db.one("SELECT COUNT(*) AS n FROM runs WHERE tenant = ? AND status IN"
                          " ('pending', 'running')", (tenant,))
        return int(row["n"]) if row else 0


@dataclass
class KillSwitch:
    """Reads the switches from the store on every check (cheap: one indexed row each)."""

    store: SwitchRows
    defaults: SwitchState = field(default_factory=SwitchState)

    def state(self, scope: str) -> SwitchState:
        """A scope's switches as they are now."""
        stored = self.store.get_switch(scope)
        if stored is not None:
            return stored
        return self.defaults if scope == PLATFORM else SwitchState()

    def paused_for(self, tenant: str) -> str | None:
        """Who paused new runs of this tenant (``platform`` or ``tenant``), or None."""
        if self.state(PLATFORM).paused:
            return "platform"
        return "tenant" if self.state(tenant).paused else None

    def disabled_for(self, tenant: str) -> frozenset[str]:
        """Tools out of service for this tenant (the platform's and its own)."""
        return self.state(PLATFORM).disabled_tools | self.state(tenant).disabled_tools

    def admit(self, tenant: str, new_run: bool = True) -> None:
        """Raise ``Conflict`` when the tenant may not start (or resume) a run now."""
        paused = self.paused_for(tenant)
        if paused == "platform":
            raise Conflict("new runs are paused platform-wide by an operator")
        if paused:
            raise Conflict(f"new runs of tenant {tenant} are paused by its admin")
        cap = self.state(tenant).max_concurrent_runs
        if new_run and cap is not None and self.store.active_runs_of(tenant) >= cap:
            raise Conflict(f"tenant {tenant} already has {cap} active runs, its limit; "
                           "retry when one ends")

    def change(self, scope: str, actor: str, audit_tenant: str,
               update: Mapping[str, Any]) -> SwitchState:
        """Set the switches named in ``update`` (``paused``, ``disabled_tools``,
        ``max_concurrent_runs``: None lifts the cap) and audit the change as ``actor``."""
        now = self.state(scope)
        cap = update.get("max_concurrent_runs", now.max_concurrent_runs)
        new = SwitchState(
            paused=bool(update.get("paused", now.paused)),
            disabled_tools=frozenset(update.get("disabled_tools", now.disabled_tools)),
            max_concurrent_runs=None if cap is None else int(cap))
        self.store.put_switch(scope, new, audit_tenant, actor)
        return self.state(scope)


class KillSwitchGate(PolicyGate):
    """Denies calls to disabled tools before the configured policy is asked."""

    def __init__(self, inner: PolicyGate, switch: KillSwitch) -> None:
        self.inner = inner
        self.switch = switch

    def check(self, request: GateRequest) -> GateDecision:
        """Deny a tool disabled for the call's tenant; otherwise defer to the policy."""
        if request.tool in self.switch.disabled_for(request.tenant):
            return GateDecision(GateAction.DENY, reason=f"{request.tool} is disabled by an admin",
                                rule="kill_switch")
        return self.inner.check(request)
