"""Provider-fault handling, kept apart from escalation: the model was fine, the call was not.

Per deployment: retry 429/5xx/timeouts with exponential backoff and jitter (a Retry-After
header wins), under a per-call timeout; then the next deployment of the same tier. A circuit
breaker per deployment skips one that keeps failing until a half-open probe succeeds. Each
model appears at most once in a chain.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from app.config.settings import FallbackConfig
from app.llm.provider import BAD_OUTPUT, ProviderFault
from graphs.errors import ModelCallError

CircuitState = Literal["closed", "open", "half_open"]
T = TypeVar("T")


@dataclass
class _Circuit:
    failures: deque[float] = field(default_factory=deque)
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    """Opens a deployment after K failures within a window; one probe call after a cooldown."""

    def __init__(
        self,
        failures: int,
        window_s: float,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = failures
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def _get(self, name: str) -> _Circuit:
        return self._circuits.setdefault(name, _Circuit())

    def state(self, name: str) -> CircuitState:
        """closed (calls flow), open (skipped) or half_open (a probe may go)."""
        c = self._get(name)
        if c.opened_at is None:
            return "closed"
        if c.probing or self.clock() - c.opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def allow(self, name: str) -> bool:
        """Whether a call may go to ``name`` now; in half-open only one probe at a time."""
        c = self._get(name)
        state = self.state(name)
        if state == "closed":
            return True
        if state == "half_open" and not c.probing:
            c.probing = True
            return True
        return False

    def success(self, name: str) -> None:
        """A good answer closes the circuit."""
        self._circuits[name] = _Circuit()

    def failure(self, name: str) -> None:
        """Count a fault; a failed probe re-opens at once."""
        c = self._get(name)
        now = self.clock()
        if c.probing or c.opened_at is not None:
            c.opened_at, c.probing = now, False
            return
        c.failures.append(now)
        while c.failures and now - c.failures[0] > self.window_s:
            c.failures.popleft()
        if len(c.failures) >= self.limit:
            c.opened_at = now
            c.failures.clear()


def backoff_s(
    attempt: int, config: FallbackConfig, retry_after_s: float | None, rng: random.Random
) -> float:
    """Wait before retry ``attempt`` (0-based): Retry-After if given, else exponential."""
    if retry_after_s is not None:
        # Honour the server's wait; jitter only ever adds, so clients do not retry in step.
        wait = min(retry_after_s, config.retry_after_max_s)
        return float(wait * (1 + rng.uniform(0, config.jitter)))
    base = min(config.backoff_max_s, config.backoff_base_s * 2.0**attempt)
    return max(0.0, base * (1 + rng.uniform(-config.jitter, config.jitter)))


@dataclass(frozen=True)
class Fault:
    """One failed attempt, for the ledger: which model, what went wrong, the wait after it."""

    model: str
    attempt: int
    fault: ProviderFault | None
    wait_s: float
    latency_ms: float
    skipped: bool = False


class Chain(Generic[T]):
    """Runs one call over a list of deployments until one answers."""

    def __init__(
        self, config: FallbackConfig, breaker: CircuitBreaker, rng: random.Random | None = None
    ) -> None:
        self.config = config
        self.breaker = breaker
        self.rng = rng or random.Random()

    async def run(
        self,
        names: Sequence[str],
        send: Callable[[str], Awaitable[T]],
        on_fault: Callable[[Fault], Awaitable[None]],
        timeouts: Mapping[str, float] | None = None,
    ) -> tuple[str, T]:
        """The first deployment's answer, trying each at most once (with its retries).

        ``send`` raises ``ProviderFault`` for a failed call; anything else (a budget stop,
        a bug) ends the chain at once. ``timeouts`` are per deployment; the config's
        ``timeout_s`` overrides them all.
        """
        timeouts = timeouts or {}
        tried: list[str] = []
        last: ProviderFault | None = None
        for name in dict.fromkeys(names):  # each model at most once per chain
            if not self.breaker.allow(name):
                await on_fault(Fault(name, 0, None, 0.0, 0.0, skipped=True))
                continue
            tried.append(name)
            for attempt in range(self.config.max_retries + 1):
                started = time.perf_counter()
                try:
                    result = await self._timed(send, name, timeouts.get(name))
                except ProviderFault as fault:
                    last = fault
                    if fault.kind in BAD_OUTPUT:
                        self.breaker.success(name)  # it answered: up, just not useful
                    else:
                        self.breaker.failure(name)
                    retry = (
                        fault.retryable
                        and attempt < self.config.max_retries
                        and self.breaker.allow(name)
                    )
                    wait = (
                        backoff_s(attempt, self.config, fault.retry_after_s, self.rng)
                        if retry
                        else 0.0
                    )
                    await on_fault(
                        Fault(
                            name,
                            attempt,
                            fault,
                            round(wait, 4),
                            (time.perf_counter() - started) * 1000,
                        )
                    )
                    if not retry:
                        break
                    await asyncio.sleep(wait)
                    continue
                self.breaker.success(name)
                return name, result
        if not tried:
            raise ModelCallError(f"every deployment's circuit is open: {', '.join(names)}")
        raise ModelCallError(f"no deployment answered ({', '.join(tried)}): {last}") from last

    async def _timed(self, send: Callable[[str], Awaitable[T]], name: str, own: float | None) -> T:
        limit = self.config.timeout_s or own
        if limit is None:
            return await send(name)
        try:
            return await asyncio.wait_for(send(name), limit)
        except TimeoutError as e:
            raise ProviderFault(f"{name}: no answer within {limit}s", "timeout") from e
