"""Ownership of a run: a claim bumps the run's epoch (its fencing token).

Whoever executes a run (a worker, or the embedded run manager) claims it first; every write
of the run then names that epoch (see ``app.runs.fencing``), so a process that was paused, lost
its claim and woke up after another took the run over has each write refused instead of
committing it. The owner heartbeats its claim; a claim whose heartbeat is older than the
stall timeout no longer holds a tenant slot and may be taken over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from app.errors import ForemanError
from app.runs import crashpoints
from app.storage.db import Cursor, Database


class LeaseLost(ForemanError):
    """A write named an epoch the run no longer has: another owner took it over."""


@dataclass(frozen=True)
class Claim:
    """A run held by ``owner`` at ``epoch``."""

    run_id: str
    epoch: int
    owner: str


FENCE_LOCK = 7310001  # advisory lock class of a run's fence (with hashtext(run id))
Beat = Literal["held", "lost", "cancel"]
Refusal = Literal["missing", "owned", "tenant_full"]


class RunClaims:
    """Claim, heartbeat and cancel-request operations on the runs table (mixed into the store)."""

    db: Database

    def claim_run(self, run_id: str, owner: str, *, tenant_limit: int | None = None,
                  stale_s: float = 30.0, take_live: bool = True) -> Claim | Refusal:
        """Take the run: bump its epoch, mark it running, stamp the heartbeat.

        Refused when the run does not exist (``missing``), when ``tenant_limit`` runs of its
        tenant are already running under live claims (``tenant_full``), or, with
        ``take_live=False``, while another owner still heartbeats it (``owned``). The
        tenant's running runs are counted under a per-tenant lock, so two claimers cannot
        both take the last slot.
        """
        now = time.time()
        with self.db.tx() as c:
            lock = " FOR UPDATE" if self.db.dialect == "postgres" else ""  # SQLite: IMMEDIATE
            rows = c.run("SELECT tenant, owner, heartbeat_at, status FROM runs WHERE id = ?"  # noqa: S608
                         + lock, (run_id,))
            if not rows:
                return "missing"
            if self.db.dialect == "postgres":  # checkpoint writes in flight commit first
                c.run("SET LOCAL lock_timeout = '10s'")
                c.run("SELECT pg_advisory_xact_lock(?, hashtext(?))", (FENCE_LOCK, run_id))
            run = rows[0]
            live = (run["status"] == "running" and run["heartbeat_at"] is not None
                    and float(run["heartbeat_at"]) > now - stale_s)
            if live and not take_live and run["owner"] != owner:
                return "owned"
            if tenant_limit is not None:
                if self.db.dialect == "postgres":
                    c.run("SELECT pg_advisory_xact_lock(hashtext(?))",
                          (f"runs:{run['tenant']}",))
                n = c.run("SELECT COUNT(*) AS n FROM runs WHERE tenant = ? AND status = ?"
                          " AND id <> ? AND heartbeat_at > ?",
                          (run["tenant"], "running", run_id, now - stale_s))
                if int(n[0]["n"]) >= tenant_limit:
                    return "tenant_full"
            got = c.run("UPDATE runs SET epoch = epoch + 1, owner = ?, heartbeat_at = ?,"
                        " status = 'running', updated_at = ? WHERE id = ? RETURNING epoch",
                        (owner, now, now, run_id))
        crashpoints.hit("run.claim")
        return Claim(run_id, int(got[0]["epoch"]), owner)

    def heartbeat(self, claim: Claim) -> Beat:
        """Renew a claim: ``held``, ``lost`` (another epoch now), or ``cancel`` (asked to stop)."""
        return self.heartbeat_all([claim])[claim.run_id]

    def heartbeat_all(self, claims: list[Claim]) -> dict[str, Beat]:
        """:meth:`heartbeat` of many claims in one transaction (a process's beat of every
        run it executes), by run id; an empty list touches nothing."""
        if not claims:
            return {}
        now = time.time()
        beats: dict[str, Beat] = {}
        with self.db.tx() as c:
            for claim in claims:
                rows = c.run("UPDATE runs SET heartbeat_at = ? WHERE id = ? AND epoch = ?"
                             " RETURNING cancel_requested", (now, claim.run_id, claim.epoch))
                beats[claim.run_id] = ("lost" if not rows else
                                       "cancel" if rows[0]["cancel_requested"] else "held")
        return beats

    def release(self, claim: Claim) -> None:
        """Give the run up (its owner stops): another owner may claim it at once."""
        with self.db.tx() as c:
            c.run("UPDATE runs SET heartbeat_at = NULL WHERE id = ? AND epoch = ?",
                  (claim.run_id, claim.epoch))

    def fence(self, c: Cursor, run_id: str, epoch: int) -> None:
        """Inside a transaction: lock the run row and check the epoch (``LeaseLost``).

        The row lock orders this write against a concurrent claim: either it commits
        first, or it sees the new epoch and is refused.
        """
        held = c.run("UPDATE runs SET epoch = epoch WHERE id = ? AND epoch = ? RETURNING id",
                     (run_id, epoch))
        if not held:
            raise LeaseLost(f"run {run_id} is no longer held at epoch {epoch}")

    def set_cancel_requested(self, run_id: str, requested: bool = True) -> None:
        """Ask the run's owner to stop (it sees this at its next heartbeat at the latest)."""
        with self.db.tx() as c:
            c.run("UPDATE runs SET cancel_requested = ? WHERE id = ?", (int(requested), run_id))

    def cancel_requested(self, run_id: str) -> bool:
        """Whether a cancel of the run is pending."""
        row = self.db.one("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,))
        return bool(row and row["cancel_requested"])

    def set_job(self, c: Cursor, run_id: str, job_id: int) -> None:
        """Inside a transaction: remember the queue job that executes the run now."""
        c.run("UPDATE runs SET job_id = ? WHERE id = ?", (job_id, run_id))

    def run_job_id(self, run_id: str) -> int | None:
        """The queue job of the run's latest start or resume."""
        row = self.db.one("SELECT job_id FROM runs WHERE id = ?", (run_id,))
        return int(row["job_id"]) if row and row["job_id"] is not None else None
