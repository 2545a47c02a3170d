"""Hard budgets: per run (USD, tokens, rounds, wall time) and per tenant per UTC day (USD).

Before each call its worst case is reserved; after it the reservation is swapped for the
real cost. Calls in flight hold their reservations, so parallel calls cannot jointly
overshoot: a run ends at most one call's worst case short of its cap, never above it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from app.settings import BudgetsConfig
from app.store import Store
from graphs.errors import BudgetExhausted
from graphs.ports import EventSink, ModelRequest

FINAL_ROLE = "manager.final"


@dataclass(frozen=True)
class Reservation:
    """What one call in flight holds against the budgets."""

    usd: float
    tokens: int


def day_start(now: float) -> float:
    """Epoch seconds of the UTC midnight before ``now``."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


class TenantSpend:
    """Each tenant's USD today: settled calls from the ledger plus calls in flight here.

    The ledger is summed at most once per ``refresh_s`` per tenant (it is read before every
    model call, and a busy server makes thousands); calls this process settles in between
    are added as they settle. Between reads a call can be counted twice (once in the read,
    once settled here) but never missed, so the cap errs towards stopping early. Other
    processes' spend is seen at the next read.
    """

    def __init__(
        self, store: Store, limit_usd: float | None, clock: Callable[[], float] = time.time,
        refresh_s: float = 1.0,
    ) -> None:
        self.store = store
        self.limit_usd = limit_usd
        self.clock = clock
        self.refresh_s = refresh_s
        self.reserved: defaultdict[str, float] = defaultdict(float)
        self._read: dict[str, tuple[float, float, float]] = {}  # tenant: (at, day, usd)

    def spent(self, tenant: str) -> float:
        """Settled cost of the tenant's calls since UTC midnight."""
        now = self.clock()
        day = day_start(now)
        at, read_day, usd = self._read.get(tenant, (0.0, -1.0, 0.0))
        if read_day != day or now - at >= self.refresh_s:
            usd = self.store.tenant_spend(tenant, since=day)
            self._read[tenant] = (now, day, usd)
        return usd

    def settled(self, tenant: str, usd: float) -> None:
        """Count a call this process just settled (its ledger row is already written)."""
        if tenant in self._read:
            at, day, spent = self._read[tenant]
            self._read[tenant] = (at, day, spent + usd)

    def headroom(self, tenant: str) -> float | None:
        """USD the tenant may still reserve today; None without a cap."""
        if self.limit_usd is None:
            return None
        return self.limit_usd - self.spent(tenant) - self.reserved[tenant]


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

    def shortfall(self, usd: float, tokens: int) -> str | None:
        """Which cap a call with this worst case would break, or None when it fits."""
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
        headroom = self.tenants.headroom(self.tenant)
        if headroom is not None and usd > headroom:
            return (
                f"tenant {self.tenant!r} daily budget ${self.tenants.limit_usd:g} cannot "
                f"cover a call of up to ${usd:.6f}"
            )
        return None

    def reserve(self, usd: float, tokens: int) -> Reservation:
        """Hold a call's worst case; ``BudgetExhausted`` when it does not fit."""
        problem = self.shortfall(usd, tokens)
        if problem is not None:
            raise BudgetExhausted(problem)
        self.reserved_usd += usd
        self.reserved_tokens += tokens
        self.tenants.reserved[self.tenant] += usd
        return Reservation(usd, tokens)

    def release(self, held: Reservation) -> None:
        """Give back a reservation whose call failed (and cost nothing)."""
        self.reserved_usd = max(0.0, self.reserved_usd - held.usd)
        self.reserved_tokens = max(0, self.reserved_tokens - held.tokens)
        self.tenants.reserved[self.tenant] = max(0.0, self.tenants.reserved[self.tenant] - held.usd)

    def settle(self, held: Reservation, usd: float, tokens: int) -> None:
        """Swap a reservation for the call's real cost, and warn at the threshold.

        The ledger row is written before this, so the tenant's settled spend includes it.
        """
        self.release(held)
        self.tenants.settled(self.tenant, usd)
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
