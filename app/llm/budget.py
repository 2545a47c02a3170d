"""Hard budgets: per run (USD, tokens, rounds, wall time) and per tenant per UTC day (USD).

Before each call its worst case is reserved; after it the reservation is swapped for the
real cost. Calls in flight hold their reservations, so parallel calls cannot jointly
overshoot: a run ends at most one call's worst case short of its cap, never above it. The
tenant's part is reserved in the database (``app.llm.tenant_spend``), so the daily cap holds
across every process sharing it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from app.config.settings import BudgetsConfig
from app.llm.tenant_spend import TenantSpend, day_start
from graphs.errors import BudgetExhausted
from graphs.ports import EventSink, ModelRequest

FINAL_ROLE = "manager.final"
__all__ = ["FINAL_ROLE", "Reservation", "RunBudget", "TenantSpend", "day_start"]


@dataclass(frozen=True)
class Reservation:
    """What one call in flight holds against the budgets."""

    usd: float
    tokens: int
    hold: str = ""  # the tenant spend hold ("" when the tenant has no cap)


class RunBudget:
    """One run's budget, reserved before and reconciled after each model call."""

    def __init__(
        self,
        config: BudgetsConfig,
        *,
        tenant: str,
        tenants: TenantSpend,
        events: EventSink,
        run_usd: float | None = None,
        spent_usd: float = 0.0,
        spent_tokens: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.limit_usd = run_usd if run_usd is not None else config.run_usd
        self.tenant = tenant
        self.tenants = tenants
        self.events = events
        self.clock = clock
        self.started = clock()
        self.spent_usd = spent_usd
        self.spent_tokens = spent_tokens
        self.reserved_usd = 0.0
        self.reserved_tokens = 0
        self._headroom: tuple[float | None] | None = None  # read by ``refresh``
        # A resumed run does not repeat warnings it already crossed.
        self.warned = {k for k, frac in self._fractions().items() if frac >= config.warn_at}

    def check_limits(self, request: ModelRequest) -> None:
        """Rounds and wall time; the final answer is exempt so a run can always close."""
        if request.role == FINAL_ROLE:
            return
        rounds = self.config.run_rounds
        current = int(request.signals.get("round", 0) or 0)
        if rounds is not None and current > rounds:
            raise BudgetExhausted(f"round budget of {rounds} reached")
        wall = self.config.run_wall_s
        if wall is not None and self.clock() - self.started > wall:
            raise BudgetExhausted(f"wall-time budget of {wall:g}s reached")

    def fits(self, usd: float, tokens: int) -> bool:
        """Whether a call with this worst case can be reserved now."""
        return self.shortfall(usd, tokens) is None

    def shortfall(self, usd: float, tokens: int, *, tenant: bool = True) -> str | None:
        """Which cap a call with this worst case would break, or None when it fits (the
        tenant's headroom as ``refresh`` last read it, else as read now; ``reserve`` checks
        the cap again atomically)."""
        if self.limit_usd is not None:
            left = self.limit_usd - self.spent_usd - self.reserved_usd
            if usd > left:
                return (
                    f"run budget ${self.limit_usd:g} cannot cover a call of up to "
                    f"${usd:.6f} (${max(0.0, left):.6f} left)"
                )
        if self.config.run_tokens is not None:
            left_tokens = self.config.run_tokens - self.spent_tokens - self.reserved_tokens
            if tokens > left_tokens:
                return (
                    f"run token budget {self.config.run_tokens} cannot cover a call of up "
                    f"to {tokens} tokens ({max(0, left_tokens)} left)"
                )
        headroom = None
        if tenant:
            headroom = (self._headroom[0] if self._headroom is not None
                        else self.tenants.headroom(self.tenant))
        if headroom is not None and usd > headroom:
            return (
                f"tenant {self.tenant!r} daily budget ${self.tenants.limit_usd:g} cannot "
                f"cover a call of up to ${usd:.6f}"
            )
        return None

    async def refresh(self) -> None:
        """Read the tenant's headroom off the event loop, for the ``shortfall`` checks of
        the call about to be routed (``reserve`` checks the cap again, atomically)."""
        if self.tenants.limit_usd is not None:
            self._headroom = (await self.tenants.store.db.call(self.tenants.headroom,
                                                               self.tenant),)

    def reserve(self, usd: float, tokens: int) -> Reservation:
        """Hold a call's worst case; ``BudgetExhausted`` when it does not fit."""
        self._admit(usd, tokens)
        return self._hold(usd, tokens, self.tenants.reserve(self.tenant, usd))

    async def areserve(self, usd: float, tokens: int) -> Reservation:
        """:meth:`reserve`, the tenant's hold written on the database's threads."""
        self._admit(usd, tokens)
        hold = ("" if self.tenants.limit_usd is None else
                await self.tenants.store.db.call(self.tenants.reserve, self.tenant, usd))
        return self._hold(usd, tokens, hold)

    def _admit(self, usd: float, tokens: int) -> None:
        problem = self.shortfall(usd, tokens, tenant=False)
        if problem is not None:
            raise BudgetExhausted(problem)

    def _hold(self, usd: float, tokens: int, hold: str) -> Reservation:
        self.reserved_usd += usd
        self.reserved_tokens += tokens
        return Reservation(usd, tokens, hold)

    def release(self, held: Reservation) -> None:
        """Give back a reservation whose call failed (and cost nothing)."""
        self._unhold(held)
        self.tenants.release(held.hold)

    async def arelease(self, held: Reservation) -> None:
        """:meth:`release` on the database's threads."""
        self._unhold(held)
        if held.hold:
            await self.tenants.store.db.call(self.tenants.release, held.hold)

    def _unhold(self, held: Reservation) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - held.usd)
        self.reserved_tokens = max(0, self.reserved_tokens - held.tokens)

    def settle(self, held: Reservation, usd: float, tokens: int) -> None:
        """Swap a reservation for the call's real cost, and warn at the threshold.

        The ledger row is written before this, so the tenant's settled spend includes it.
        """
        self.tenants.settle(held.hold, self.tenant, usd)
        self._count(held, usd, tokens)

    async def asettle(self, held: Reservation, usd: float, tokens: int) -> None:
        """:meth:`settle`, the tenant's hold swapped on the database's threads."""
        if held.hold:
            await self.tenants.store.db.call(self.tenants.settle, held.hold, self.tenant, usd)
        else:  # no cap, no hold: nothing to write
            self.tenants.settle(held.hold, self.tenant, usd)
        self._count(held, usd, tokens)

    def _count(self, held: Reservation, usd: float, tokens: int) -> None:
        self._unhold(held)
        self.spent_usd += usd
        self.spent_tokens += tokens
        for key, fraction in self._fractions().items():
            if fraction >= self.config.warn_at and key not in self.warned:
                self.warned.add(key)
                scope, unit = key.split(".")
                self.events.emit(
                    "budget_warning",
                    {
                        "scope": scope,
                        "unit": unit,
                        "fraction": round(fraction, 3),
                        "spent": self._spent(key),
                        "limit": self._limit(key),
                    },
                )

    def _limit(self, key: str) -> float | None:
        return {
            "run.usd": self.limit_usd,
            "run.tokens": (float(self.config.run_tokens) if self.config.run_tokens else None),
            "tenant.usd": self.tenants.limit_usd,
        }[key]

    def _spent(self, key: str) -> float:
        if key == "run.usd":
            return round(self.spent_usd, 6)
        if key == "run.tokens":
            return float(self.spent_tokens)
        return round(self.tenants.spent(self.tenant), 6)

    def _fractions(self) -> dict[str, float]:
        out = {}
        for key in ("run.usd", "run.tokens", "tenant.usd"):
            limit = self._limit(key)
            if limit:
                out[key] = self._spent(key) / limit
        return out
