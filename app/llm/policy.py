"""Routing policies: which tier a call starts on, and the escalation cascade on failures.

A policy only picks a tier and says why; the router turns the tier into concrete
deployments, fits it to the budget and handles provider faults. ``Policy`` is the seam a
learned router plugs into.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from app.config.settings import TIERS, FailureKind, PolicyName, RoutingConfig, Tier
from graphs.ports import ModelRequest

# Scales at which each part of the difficulty signal saturates.
_LONG_STEP_CHARS = 12_000
_LONG_TASK_CHARS = 2_000
_MANY_TOOLS = 8
_MANY_TOOL_RESULTS = 6


@dataclass(frozen=True)
class Choice:
    """The tier a policy picked for one call, and the route reason to record."""

    tier: Tier
    reason: str
    escalated: bool = False


class Tiers:
    """The tiers that have a usable model right now, cheapest first."""

    def __init__(self, available: Sequence[Tier]) -> None:
        self.order = [t for t in TIERS if t in set(available)]
        if not self.order:
            raise ValueError("no tier has a usable model")

    @property
    def lowest(self) -> Tier:
        """The cheapest available tier."""
        return self.order[0]

    @property
    def highest(self) -> Tier:
        """The strongest available tier."""
        return self.order[-1]

    def nearest(self, tier: Tier) -> Tier:
        """``tier`` itself, else the next stronger available one, else the strongest."""
        rank = TIERS.index(tier)
        return next((t for t in self.order if TIERS.index(t) >= rank), self.highest)

    def lift(self, tier: Tier, steps: int) -> Tier:
        """``steps`` available tiers above ``tier`` (capped at the strongest)."""
        i = self.order.index(self.nearest(tier))
        return self.order[min(len(self.order) - 1, i + max(0, steps))]

    def below(self, tier: Tier) -> list[Tier]:
        """Cheaper available tiers, strongest first (the downgrade order)."""
        rank = TIERS.index(tier)
        return [t for t in reversed(self.order) if TIERS.index(t) < rank]


class Policy(Protocol):
    """Picks the tier of one call from the request, its role's home tier and what is available."""

    name: str

    def choose(self, request: ModelRequest, home: Tier, tiers: Tiers) -> Choice: ...


def difficulty(request: ModelRequest) -> float:
    """0..1 from the whole step: its size, tools, tool results, failures, replans, task."""
    s = request.signals
    chars = sum(len(str(m.get("content") or "")) for m in request.messages)
    results = sum(1 for m in request.messages if m.get("role") == "tool")
    tools = int(s.get("tools", len(request.tools or [])))
    parts = (
        (0.25, chars / _LONG_STEP_CHARS),
        (0.10, results / _MANY_TOOL_RESULTS),
        (0.15, tools / _MANY_TOOLS),
        (0.25, int(s.get("prior_failures", 0)) / 2),
        (0.15, int(s.get("replans", 0))),
        (0.10, int(s.get("task_chars", 0)) / _LONG_TASK_CHARS),
    )
    return round(sum(w * min(1.0, max(0.0, v)) for w, v in parts), 3)


def failure_of(request: ModelRequest) -> tuple[FailureKind, int] | None:
    """The typed failure this call follows, and how many the step has had so far."""
    s = request.signals
    kind = s.get("failure")
    if kind == "schema_invalid":
        return "schema_invalid", int(s.get("attempt", 1))
    if kind == "tool_args_invalid":
        return "tool_args_invalid", int(s.get("arg_errors", 1))
    if kind == "stall":
        return "stall", int(s.get("stalls", 1))
    if kind == "verifier_rejected":
        return "verifier_rejected", int(s.get("rejections", 1))
    return None


class FixedTier:
    """``all-small`` / ``all-large``: every call on one tier (the baselines routing beats)."""

    def __init__(self, name: str, strongest: bool) -> None:
        self.name = name
        self.strongest = strongest

    def choose(self, request: ModelRequest, home: Tier, tiers: Tiers) -> Choice:
        """The strongest or the cheapest available tier, whatever the call."""
        tier = tiers.highest if self.strongest else tiers.lowest
        return Choice(tier, f"fixed tier {tier}")


class Routed:
    """Start on the role's tier, lift hard steps one tier, escalate after typed failures."""

    name = "routed"

    def __init__(self, config: RoutingConfig) -> None:
        self.lift_at = config.difficulty.lift_at
        self.max_escalations = config.escalation.max_per_step
        self.escalate_on = set(config.escalation.on)

    def choose(self, request: ModelRequest, home: Tier, tiers: Tiers) -> Choice:
        """Home tier, +1 when difficult, +n (at most the per-step cap) after n failures."""
        start = tiers.nearest(home)
        score = difficulty(request)
        reasons = [f"start {start} ({request.role})", f"difficulty {score:.2f}"]
        if score >= self.lift_at:
            start = tiers.lift(start, 1)
            reasons.append(f"lifted to {start}")
        failed = failure_of(request)
        if failed and failed[0] in self.escalate_on and self.max_escalations:
            kind, count = failed
            steps = min(max(1, count), self.max_escalations)
            tier = tiers.lift(start, steps)
            if tier != start:
                reasons.append(f"escalation {steps} after {kind} → {tier}")
                return Choice(tier, "; ".join(reasons), escalated=True)
        # No failure (or the cap is spent): the step is back on its starting tier.
        return Choice(start, "; ".join(reasons))


def make_policy(name: PolicyName, config: RoutingConfig) -> Policy:
    """The policy of that name."""
    if name == "all-small":
        return FixedTier("all-small", strongest=False)
    if name == "all-large":
        return FixedTier("all-large", strongest=True)
    return Routed(config)
