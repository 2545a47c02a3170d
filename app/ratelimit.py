"""Per-tenant token buckets for starting runs."""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """``per_minute`` run starts per tenant, with bursts up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, _Bucket] = {}

    def take(self, tenant: str) -> None:
        """Spend one token or raise ``RateLimited`` with the wait until the next."""
        now = time.monotonic()
        b = self._buckets.setdefault(tenant, _Bucket(self.capacity, now))
        b.tokens = min(self.capacity, b.tokens + (now - b.stamp) * self.rate)
        b.stamp = now
        if b.tokens < 1:
            raise RateLimited(f"tenant {tenant!r} starts too many runs; slow down",
                              retry_after_s=(1 - b.tokens) / self.rate)
        b.tokens -= 1
