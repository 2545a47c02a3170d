"""Per-tenant token buckets for starting runs, kept in the app database so that every API
replica draws on the same bucket."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.errors import RateLimited
from app.storage.db import Database

SCHEMA = """CREATE TABLE IF NOT EXISTS rate_buckets (
    tenant TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    stamp DOUBLE PRECISION NOT NULL
)"""


class RateLimiter:
    """``per_minute`` run starts per tenant, with bursts up to the same number.

    The bucket is read and written in one transaction under the row's lock (SQLite's
    write lock), so concurrent starts in any process cannot both spend the last token.
    """

    def __init__(self, per_minute: int, db: Database,
                 clock: Callable[[], float] = time.time) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.db = db
        self.clock = clock
        db.schema_once("rate_buckets", SCHEMA, self._create_schema)

    def _create_schema(self) -> None:
        with self.db.tx() as c:
            c.run(SCHEMA)

    def take(self, tenant: str) -> None:
        """Spend one token or raise ``RateLimited`` with the wait until the next."""
        now = self.clock()
        lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""
        with self.db.tx() as c:
            c.run("INSERT INTO rate_buckets (tenant, tokens, stamp) VALUES (?, ?, ?)"
                  " ON CONFLICT DO NOTHING", (tenant, self.capacity, now))
            row = c.run("SELECT tokens, stamp FROM rate_buckets WHERE tenant = ?"  # noqa: S608
                        + lock, (tenant,))[0]
            tokens = min(self.capacity,
                         float(row["tokens"]) + max(0.0, now - float(row["stamp"])) * self.rate)
            if tokens < 1:
                c.run("UPDATE rate_buckets SET tokens = ?, stamp = ? WHERE tenant = ?",
                      (tokens, now, tenant))
                wait = (1 - tokens) / self.rate
            else:
                c.run("UPDATE rate_buckets SET tokens = ?, stamp = ? WHERE tenant = ?",
                      (tokens - 1, now, tenant))
                return
        raise RateLimited(f"tenant {tenant!r} starts too many runs; slow down",
                          retry_after_s=wait)
