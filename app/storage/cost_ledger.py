"""The model-call journal, which doubles as the cost ledger, and the exact-match cache.

One row per completed call, unique per (run, call key), holding the response so a re-run
node gets it back instead of paying again; failed attempts get rows of their own
(``<call key>#<n>``, no response) so faults are costed and visible too. Portable SQL on
:class:`~app.storage.db.Database`, like the rest of the app tables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.storage.db import Cursor, Database


@dataclass(frozen=True)
class Totals:
    """Model usage summed over a run or a tenant."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class LedgerRow:
    """One model call (or failed attempt) in the cost ledger."""

    run_id: str
    call_key: str
    thread_id: str
    tenant: str
    role: str
    agent: str | None
    model: str
    tier: str
    route_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float
    latency_ms: float
    outcome: str


DAY_S = 86400
# Each tenant's settled USD per UTC day, kept with the ledger so a capped reservation reads
# one row instead of summing the day's calls (app/llm/tenant_spend.py).
SPEND_SCHEMA = """CREATE TABLE IF NOT EXISTS tenant_day_spend (
    tenant TEXT NOT NULL,
    day BIGINT NOT NULL,
    usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, day)
)"""


def utc_day(at: float) -> int:
    """Epoch seconds of the UTC midnight before ``at`` (POSIX days are 86,400 s)."""
    return int(at // DAY_S) * DAY_S


def stored_response(raw: str | None) -> dict[str, Any] | None:
    """A journal row's stored response (None for a call that never answered)."""
    data = json.loads(raw) if raw else None
    return data if isinstance(data, dict) else None


class CostLedger:
    """Journal, ledger and cache methods of the store."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _spend_schema(self) -> None:
        # A database from before the counter gets today's from the ledger (the only day the
        # cap reads); a counter already there is never overwritten, so starting twice or
        # beside a writer cannot count a call twice.
        now = time.time()
        with self.db.tx() as c:
            c.run(SPEND_SCHEMA)
            c.run("INSERT INTO tenant_day_spend (tenant, day, usd)"
                  " SELECT tenant, ?, SUM(cost_usd) FROM model_calls WHERE created_at >= ?"
                  " GROUP BY tenant ON CONFLICT DO NOTHING", (utc_day(now), utc_day(now)))

    def day_spend(self, c: Cursor, tenant: str, day: int) -> float:
        """The tenant's settled USD since ``day`` began (``utc_day``), inside a transaction:
        the one counter of that day, as the ledger dates its rows after it."""
        rows = c.run("SELECT COALESCE(SUM(usd), 0) AS usd FROM tenant_day_spend"
                     " WHERE tenant = ? AND day >= ?", (tenant, day))
        return float(rows[0]["usd"])

    def journal_get(self, run_id: str, call_key: str) -> dict[str, Any] | None:
        """A completed call's stored response, if this call already ran."""
        row = self.db.one("SELECT response FROM model_calls WHERE run_id = ? AND call_key = ?",
                          (run_id, call_key))
        return stored_response(row["response"] if row else None)

    def ledger_put(self, row: LedgerRow, response: Mapping[str, Any] | None) -> None:
        """Record a call, with its response when it answered (first write wins)."""
        with self.db.tx() as c:
            self.ledger_in(c, row, response)

    def ledger_in(self, c: Cursor, row: LedgerRow, response: Mapping[str, Any] | None) -> None:
        """``ledger_put`` inside the caller's transaction."""
        now = time.time()
        added = c.run(
            "INSERT INTO model_calls (run_id, call_key, thread_id, tenant, role, agent,"
            " model, tier, route_reason, prompt_tokens, completion_tokens, cached_tokens,"
            " cost_usd, latency_ms, outcome, response, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
            " RETURNING call_key",
            (row.run_id, row.call_key, row.thread_id, row.tenant, row.role, row.agent,
             row.model, row.tier, row.route_reason, row.prompt_tokens,
             row.completion_tokens, row.cached_tokens, row.cost_usd, row.latency_ms,
             row.outcome, json.dumps(response), now))
        if added:  # a replayed write (first one won) must not count twice
            c.run("INSERT INTO tenant_day_spend (tenant, day, usd) VALUES (?, ?, ?)"
                  " ON CONFLICT (tenant, day) DO UPDATE"
                  " SET usd = tenant_day_spend.usd + excluded.usd",
                  (row.tenant, utc_day(now), row.cost_usd))

    def ledger(self, run_id: str) -> list[dict[str, Any]]:
        """The run's cost-ledger rows in the order they were written (without responses)."""
        rows = self.db.query("SELECT * FROM model_calls WHERE run_id = ?"
                             " ORDER BY created_at, call_key", (run_id,))
        return [{k: v for k, v in r.items() if k != "response"} for r in rows]

    def totals(self, run_id: str) -> Totals:
        """Answered calls, tokens and cost of a run so far."""
        return self._sum("run_id = ?", (run_id,))

    def tenant_totals(self, tenant: str, since: float = 0.0) -> Totals:
        """Answered calls, tokens and cost of a tenant's runs since ``since``."""
        return self._sum("tenant = ? AND created_at >= ?", (tenant, since))

    def tenant_spend(self, tenant: str, since: float) -> float:
        """USD a tenant spent since ``since``."""
        return self.tenant_totals(tenant, since).cost_usd

    def _sum(self, where: str, params: tuple[Any, ...]) -> Totals:
        # ``where`` is one of this class's fixed clauses; values go in as parameters.
        r = self.db.one(f"SELECT {TOTALS} FROM model_calls WHERE {where}", params)  # noqa: S608
        assert r is not None
        return totals_of(r)

    def cache_get(self, key: str) -> dict[str, Any] | None:
        """A cached response by its request hash."""
        row = self.db.one("SELECT response FROM response_cache WHERE key = ?", (key,))
        return json.loads(row["response"]) if row else None

    def cache_put(self, key: str, model: str, response: Mapping[str, Any]) -> None:
        """Cache a response (first write wins)."""
        with self.db.tx() as c:
            c.run("INSERT INTO response_cache (key, model, response, created_at)"
                  " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                  (key, model, json.dumps(response), time.time()))


# The columns of ``Totals`` summed over the model_calls rows a query selects.
TOTALS = ("COALESCE(SUM(CASE WHEN outcome IN ('ok', 'cached') THEN 1 ELSE 0 END), 0) AS n,"
          " COALESCE(SUM(prompt_tokens), 0) AS p, COALESCE(SUM(completion_tokens), 0) AS c,"
          " COALESCE(SUM(cost_usd), 0) AS usd")


def totals_of(row: Mapping[str, Any]) -> Totals:
    """``Totals`` from a row holding the ``TOTALS`` columns (null when nothing was summed)."""
    return Totals(int(row["n"] or 0), int(row["p"] or 0), int(row["c"] or 0),
                  float(row["usd"] or 0))
