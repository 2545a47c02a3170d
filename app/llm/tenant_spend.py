"""Each tenant's USD per UTC day, held in the database so one cap holds across processes.

The settled part is the tenant's counter for the day (``tenant_day_spend``, added to in
the transaction that writes each cost-ledger row, so it always equals that day's ledger
sum); calls in flight hold rows in ``spend_holds``. A reservation is one transaction under
a per-tenant lock (an advisory lock on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serializes
writers): it reads the counter (one row, however many calls the day had) and sums the
tenant's live holds, and inserts its own hold only if the total stays
within the cap, so two processes (or two stores on one database) cannot both take the last
headroom. Settling deletes the hold once the call's ledger row is written (between the two
the call counts twice, which errs towards stopping early, never past the cap). A hold
whose process died lapses after ``hold_ttl_s``, longer than any model call may take.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from app.storage.cost_ledger import utc_day
from app.storage.store import Store
from graphs.errors import BudgetExhausted

SPEND_LOCK = 7310002  # advisory lock class of a tenant's spend (with hashtext(tenant))
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS spend_holds (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        usd DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS spend_holds_tenant ON spend_holds(tenant, expires_at)",
]


def day_start(now: float) -> float:
    """Epoch seconds of the UTC midnight before ``now``."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


class TenantSpend:
    """Reserve, release and settle tenant spend against the daily cap, in the database.

    ``spent`` (what budget warnings report) reads the ledger at most once per
    ``refresh_s`` per tenant and adds what this process settles in between; the cap itself
    is only ever checked by ``reserve``, against fresh sums.
    """

    def __init__(
        self, store: Store, limit_usd: float | None, clock: Callable[[], float] = time.time,
        refresh_s: float = 1.0, hold_ttl_s: float = 900.0,
    ) -> None:
        self.store = store
        self.limit_usd = limit_usd
        self.clock = clock
        self.refresh_s = refresh_s
        self.hold_ttl_s = hold_ttl_s
        self._read: dict[str, tuple[float, float, float]] = {}  # tenant: (at, day, usd)
        if limit_usd is not None:
            store.db.schema_once("spend_holds", SCHEMA, self._create_schema)

    def _create_schema(self) -> None:
        with self.store.db.tx() as c:
            for statement in SCHEMA:
                c.run(statement)

    def spent(self, tenant: str) -> float:
        """Settled cost of the tenant's calls since UTC midnight (cached briefly)."""
        now = self.clock()
        day = day_start(now)
        at, read_day, usd = self._read.get(tenant, (0.0, -1.0, 0.0))
        if read_day != day or now - at >= self.refresh_s:
            usd = self.store.tenant_spend(tenant, since=day)
            self._read[tenant] = (now, day, usd)
        return usd

    def held(self, tenant: str) -> float:
        """USD the tenant's calls in flight hold now (every process's)."""
        if self.limit_usd is None:
            return 0.0
        row = self.store.db.one("SELECT COALESCE(SUM(usd), 0) AS usd FROM spend_holds"
                                " WHERE tenant = ? AND expires_at > ?", (tenant, self.clock()))
        return float(row["usd"]) if row else 0.0

    def headroom(self, tenant: str) -> float | None:
        """USD the tenant may still reserve today (a reading); None without a cap."""
        if self.limit_usd is None:
            return None
        return self.limit_usd - self.spent(tenant) - self.held(tenant)

    def reserve(self, tenant: str, usd: float) -> str:
        """Hold ``usd`` of the tenant's cap for a call (its hold id; "" without a cap), or
        raise ``BudgetExhausted`` when the ledger and the live holds leave too little."""
        if self.limit_usd is None:
            return ""
        now = self.clock()
        hold = uuid.uuid4().hex
        db = self.store.db
        with db.tx() as c:
            if db.dialect == "postgres":
                c.run("SELECT pg_advisory_xact_lock(?, hashtext(?))", (SPEND_LOCK, tenant))
            c.run("DELETE FROM spend_holds WHERE tenant = ? AND expires_at <= ?", (tenant, now))
            settled = self.store.day_spend(c, tenant, utc_day(now))
            row = c.run("SELECT COALESCE(SUM(usd), 0) AS usd FROM spend_holds"
                        " WHERE tenant = ?", (tenant,))
            if settled + float(row[0]["usd"]) + usd > self.limit_usd + 1e-12:
                raise BudgetExhausted(
                    f"tenant {tenant!r} daily budget ${self.limit_usd:g} cannot cover a "
                    f"call of up to ${usd:.6f}")
            c.run("INSERT INTO spend_holds (id, tenant, usd, expires_at) VALUES (?, ?, ?, ?)",
                  (hold, tenant, usd, now + self.hold_ttl_s))
        return hold

    def release(self, hold: str) -> None:
        """Give a hold back (its call failed, or has been settled)."""
        if hold:
            with self.store.db.tx() as c:
                c.run("DELETE FROM spend_holds WHERE id = ?", (hold,))

    def settle(self, hold: str, tenant: str, usd: float) -> None:
        """Swap a hold for the call's real cost (its ledger row is already written)."""
        self.release(hold)
        if tenant in self._read:
            at, day, spent = self._read[tenant]
            self._read[tenant] = (at, day, spent + usd)
