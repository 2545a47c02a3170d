"""The world of the approvals state machine: principals of two tenants, the policy the
oracle knows, the calls that ask for approval, and a runner whose checkpoint is a model."""

from __future__ import annotations

import asyncio
import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.api.auth import Principal
from app.config.settings import Settings
from app.governance.policy.gate import PolicyEngine
from app.governance.policy.rules import RuleConfig
from app.runs.pauses import Interrupt
from app.runs.runner import Runner
from app.storage.store import RunRow
from app.tooling.toolbox import static_registry
from tests.conftest import make_settings
from tools.registry import ToolRegistry

TENANTS = ("acme", "globex")


def _p(name: str, tenant: str, roles: set[str], groups: set[str] = frozenset()) -> Principal:
    return Principal(name, tenant, frozenset(roles), groups=frozenset(groups))


def roster(tenant: str) -> list[Principal]:
    """The same names in both tenants: isolation must not lean on names."""
    return [
        _p("alice", tenant, {"requester", "approver"}, {"support-leads"}),
        _p("bob", tenant, {"requester"}),
        _p("lena", tenant, {"approver"}, {"support-leads"}),
        _p("fin", tenant, {"approver"}, {"finance-leads"}),
        _p("sam", tenant, {"approver"}, {"sre-oncall"}),
        _p("olga", tenant, {"approver"}, {"globex-ops", "support-leads"}),
        _p("pat", tenant, {"approver"}),
        _p("root", tenant, {"admin"}),
    ]


PRINCIPALS = [p for t in TENANTS for p in roster(t)]
REQUESTERS = ("alice", "bob", "root")
# (tool, args): refunds under each refund rule, restarts of production and other services.
CALLS = [("issue_refund", {"order_id": "O-5002", "amount_usd": a, "reason": "broken"})
         for a in (120.0, 189.0, 640.0, 950.0)] + [
    ("restart_service", {"service": s}) for s in ("checkout-api", "search-api")]
EDITS: list[dict[str, Any]] = [
    {"order_id": "O-5002", "amount_usd": 30.0, "reason": "partial"},   # allowed
    {"order_id": "O-5002", "amount_usd": 99, "reason": "partial"},     # over-50
    {"order_id": "O-5002", "amount_usd": 700.0, "reason": "goodwill"},  # over-500
    {"order_id": "O-5002", "amount_usd": 1500.0, "reason": "goodwill"},  # denied
    {"order_id": "O-5002", "amount_usd": "189", "reason": "typed"},    # invalid
    {"order_id": "O-5002", "amount_usd": 50.0},                        # invalid
    {"service": "payments-worker"},                                    # production
    {"service": "docs-site"},                                          # allowed
]


def policy_settings(root: Path) -> Settings:
    """The bundled policy, a globex-only rule first, and the admin switches the oracle knows."""
    base = make_settings(root, with_policy=True)
    rules = [RuleConfig(name="globex-restarts", tools=["restart_service"], tenants=["globex"],
                        action="require_approval", approver_group="globex-ops",
                        expires_in_s=1800)]
    for r in base.policy.rules:
        flags = {"refunds-over-500": {"admin_override": True},
                 "production-remediation": {"admin_override": True,
                                            "admin_may_self_approve": True}}
        rules.append(r.model_copy(update=flags.get(r.name, {})))
    return base.model_copy(update={"policy": base.policy.model_copy(update={"rules": rules})})


def expected_rule(tenant: str, tool: str, args: dict[str, Any]) -> tuple[str, str | None]:
    """The oracle's policy: (action, group) from the rules as written above."""
    if tool == "restart_service":
        if tenant == "globex":
            return "require_approval", "globex-ops"
        if args["service"] in ("checkout-api", "payments-worker", "search-api"):
            return "require_approval", "sre-oncall"
        return "allow", None
    amount = float(args["amount_usd"])
    if amount > 1000:
        return "deny", None
    if amount > 500:
        return "require_approval", "finance-leads"
    return ("require_approval", "support-leads") if amount > 50 else ("allow", None)


@dataclass
class Ask:
    """The machine's record of one approval."""

    id: str
    tenant: str
    thread: str
    interrupt: str
    requester: str
    tool: str
    rule: str
    group: str | None
    digest: str
    expires_at: float
    status: str = "pending"
    decided_by: str | None = None


@dataclass
class Thread:
    tenant: str
    run: RunRow
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # the checkpoint


@functools.cache
def world() -> tuple[Settings, PolicyEngine, ToolRegistry]:
    """Settings, gate and tools: read once, shared by every example (none of them changes)."""
    settings = policy_settings(Path(tempfile.gettempdir()) / "approvals-sm-unused")
    return settings, PolicyEngine(settings.policy), static_registry(settings)



class CheckpointRunner(Runner):
    """The real runner whose checkpoint is the machine's model of each thread."""

    threads: dict[str, Thread]

    async def pending_interrupts(self, thread_id: str, team: str) -> list[Interrupt]:
        await asyncio.sleep(0)  # a checkpoint read yields: concurrent decisions interleave
        found = self.threads.get(thread_id)
        return [Interrupt(i, v) for i, v in (found.pending.items() if found else [])]


def refusal(settings: Settings, who: Principal, ask: Ask) -> str | None:
    """The oracle's reading of who may decide: role, requester, group, admin switches."""
    if not who.has("approver"):
        return "role"
    admin = "admin" in who.roles
    rule = next(r for r in settings.policy.rules if r.name == ask.rule)
    if ask.requester == who.name and not (admin and rule.admin_may_self_approve):
        return "self"
    if ask.group and not who.in_group(ask.group) and not (admin and rule.admin_override):
        return "group"
    return None
