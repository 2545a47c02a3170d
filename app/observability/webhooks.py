"""Webhooks: tell other systems when a run ends, pauses for a human, or an approval expires.

Targets are a run's own ``webhook`` URL (LangGraph Platform convention, on the run body) and
the tenant's subscriptions in config. Deliveries are signed per Standard Webhooks
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``), retried with exponential
backoff, and logged in ``webhook_deliveries`` (the console shows a run's).

The dispatcher never touches a run: it reads the persisted events (an outbox), so a run is
never slowed or blocked, and runs executing in another process are covered too. Delivery
ids are deterministic per (run, event, target) and each attempt is claimed with a
conditional update, so several API replicas never deliver an event twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import ipaddress
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from app.config.ops_config import WebhooksConfig
from app.config.settings import Settings
from app.errors import ConfigError, InvalidRequest
from app.storage.db import Database
from app.storage.store import Store
from app.storage.thread_keys import local_id

log = logging.getLogger(__name__)

# Run events that are delivered, as the webhook event type each becomes.
EVENT_TYPES = {
    "run_completed": "run.completed",
    "run_failed": "run.failed",
    "run_cancelled": "run.cancelled",
    "approval_requested": "run.interrupted",
    "approval_decided": "approval.expired",  # only decisions made by the expiry sweep
}
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS webhook_deliveries (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event TEXT NOT NULL,
        url TEXT NOT NULL,
        secret_env TEXT,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_at DOUBLE PRECISION NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        delivered_at DOUBLE PRECISION
    )""",
    "CREATE INDEX IF NOT EXISTS webhook_due ON webhook_deliveries(status, next_at)",
    "CREATE INDEX IF NOT EXISTS webhook_run ON webhook_deliveries(run_id, created_at)",
    "CREATE INDEX IF NOT EXISTS events_ts ON events(ts)",
    """CREATE TABLE IF NOT EXISTS webhook_cursor (
        name TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL)""",
]
OVERLAP_S = 5.0  # events committed slightly out of time order are still seen
LEASE_S = 60.0  # an attempt in flight is not claimed again before this


def check_url(url: str, *, allow_private: bool = True) -> str:
    """A webhook URL: http(s), a host, no credentials in it (those belong in the secret)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("webhook must be an http:// or https:// URL with a host",
                             field="webhook")
    if parts.username or parts.password:
        raise InvalidRequest("webhook URL must not carry credentials", field="webhook")
    if not allow_private and _private(parts.hostname):
        raise InvalidRequest("webhook URL points at a private or loopback address "
                             "(webhooks.allow_private_targets is off)", field="webhook")
    return url.strip()


def shown_url(url: str) -> str:
    """A URL fit for logs and the console: no query string or fragment."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}" \
           f"{parts.path}{'?…' if parts.query else ''}"


def _private(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.endswith(".local"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved


def deliveries(db: Database, run_id: str) -> list[dict[str, Any]]:
    """A run's deliveries, oldest first, as the console shows them."""
    rows = db.query("SELECT id, event, url, status, attempts, last_status, last_error,"
                    " next_at, created_at, delivered_at FROM webhook_deliveries"
                    " WHERE run_id = ? ORDER BY created_at, id", (run_id,))
    return [{**r, "url": shown_url(r["url"])} for r in rows]


def ensure_schema(db: Database) -> None:
    """Create the delivery log (once per definition: ``Database.schema_once``)."""
    def create() -> None:
        with db.tx() as c:
            for statement in SCHEMA:
                c.run(statement)

    db.schema_once("webhooks", SCHEMA, create)


def check_secrets(settings: Settings) -> None:
    """A subscription naming a secret variable that is unset is a config error."""
    for i, sub in enumerate(settings.webhooks.subscriptions):
        if sub.secret_env and not os.environ.get(sub.secret_env):
            raise ConfigError(f"{settings.source}: webhooks.subscriptions.{i}.secret_env:"
                              f" environment variable {sub.secret_env} is not set")


@dataclass(frozen=True)
class Target:
    """Where one event goes, and which secret signs it."""

    url: str
    secret_env: str | None


class Webhooks:
    """The dispatcher: turns stored events into deliveries and sends the due ones."""

    def __init__(self, settings: Settings, store: Store,
                 client: httpx.AsyncClient | None = None) -> None:
        self.config: WebhooksConfig = settings.webhooks
        self.store = store
        self.db = store.db
        self.secret_file = settings.data_dir / "webhook-secret"
        self._client = client  # made on first use: its transport's import takes a while
        check_secrets(settings)
        ensure_schema(self.db)
        self._sending = asyncio.Semaphore(8)

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client deliveries go out on."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.config.timeout_s,
                                             follow_redirects=False)
        return self._client

    # what to deliver
    def targets(self, tenant: str, event: str, run_metadata: Mapping[str, Any]) -> list[Target]:
        """The run's own webhook and the tenant's subscriptions to ``event``."""
        out = []
        if isinstance(run_metadata.get("webhook"), str):
            out.append(Target(run_metadata["webhook"], None))
        for sub in self.config.subscriptions:
            if sub.tenant == tenant and (not sub.events or event in sub.events):
                out.append(Target(sub.url, sub.secret_env))
        return out

    def scan(self, now: float | None = None) -> int:
        """Record deliveries for events stored since the last scan; how many were new."""
        now = time.time() if now is None else now
        row = self.db.one("SELECT ts FROM webhook_cursor WHERE name = 'events'")
        since = float(row["ts"]) - OVERLAP_S if row else now - OVERLAP_S
        marks = ", ".join("?" for _ in EVENT_TYPES)
        events = self.db.query(
            f"SELECT run_id, seq, type, data, ts, tenant FROM events WHERE ts > ?"  # noqa: S608
            f" AND type IN ({marks}) ORDER BY ts", (since, *EVENT_TYPES))
        added = 0
        newest = since + OVERLAP_S
        for e in events:
            newest = max(newest, float(e["ts"]))
            data = json.loads(e["data"])
            if e["type"] == "approval_decided" and data.get("decision") != "expired":
                continue
            run = self.store.get_run(e["run_id"])
            if run is None:
                continue
            kind = EVENT_TYPES[e["type"]]
            for target in self.targets(run.tenant, kind, run.metadata):
                added += self._record(e, kind, data, target, now)
        with self.db.tx() as c:
            c.run("INSERT INTO webhook_cursor (name, ts) VALUES ('events', ?)"
                  " ON CONFLICT (name) DO UPDATE SET ts = excluded.ts", (newest,))
        return added

    def _record(self, e: Mapping[str, Any], kind: str, data: Mapping[str, Any],
                target: Target, now: float) -> int:
        run = self.store.get_run(e["run_id"])
        assert run is not None
        digest = hashlib.sha256(f"{e['run_id']}:{e['seq']}:{target.url}".encode()).hexdigest()
        msg_id = f"msg_{digest[:24]}"
        totals = self.store.totals(run.id)
        payload = {"type": kind, "timestamp": datetime.fromtimestamp(e["ts"], UTC).isoformat(),
                   "data": {"run_id": run.id, "thread_id": local_id(run.thread_id),
                            "team": run.team, "status": run.status, "stop_reason": run.stop_reason,
                            "final_answer": run.final_answer, "error": run.error,
                            "cost_usd": round(totals.cost_usd, 6),
                            "created_at": run.created_at, "updated_at": run.updated_at,
                            "event": _event_fields(e["type"], data)}}
        with self.db.tx() as c:
            rows = c.run(
                "INSERT INTO webhook_deliveries (id, tenant, run_id, seq, event, url, secret_env,"
                " payload, status, attempts, next_at, created_at) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT DO NOTHING"
                " RETURNING id", (msg_id, run.tenant, run.id, e["seq"], kind, target.url,
                                  target.secret_env, json.dumps(payload, default=str), now,
                                  now))
        return len(rows)

    # sending
    async def send_due(self, now: float | None = None) -> int:
        """Attempt every due delivery (claimed first); how many were attempted."""
        now = time.time() if now is None else now
        due = self.db.query("SELECT * FROM webhook_deliveries WHERE status = 'pending'"
                            " AND next_at <= ? ORDER BY next_at LIMIT 100", (now,))
        claimed = []
        for d in due:
            with self.db.tx() as c:
                got = c.run("UPDATE webhook_deliveries SET next_at = ? WHERE id = ?"
                            " AND status = 'pending' AND next_at = ? RETURNING id",
                            (now + LEASE_S, d["id"], d["next_at"]))
            if got:
                claimed.append(d)
        await asyncio.gather(*(self._attempt(d) for d in claimed))
        return len(claimed)

    async def _attempt(self, d: Mapping[str, Any]) -> None:
        async with self._sending:
            attempt = int(d["attempts"]) + 1
            sent_at = datetime.now(UTC)
            body = str(d["payload"])
            headers = {"content-type": "application/json", "user-agent": "foreman-webhooks",
                       "webhook-id": d["id"], "webhook-timestamp": str(int(sent_at.timestamp())),
                       "webhook-signature": Webhook(self.secret(d["secret_env"])).sign(
                           d["id"], sent_at, body)}
            status: int | None = None
            error: str | None = None
            retry_after = 0.0
            try:
                reply = await self.client.post(d["url"], content=body, headers=headers)
                status = reply.status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
                    retry_after = _retry_after(reply.headers.get("retry-after"))
            except httpx.HTTPError as e:
                error = type(e).__name__  # never the URL: it may carry a token in its query
            now = time.time()
            fields: tuple[str, float, float | None]
            if error is None:
                fields = ("delivered", now, now)
            elif attempt >= self.config.max_attempts:
                fields = ("failed", now, None)
            else:
                wait = min(self.config.backoff_s * 2 ** (attempt - 1), self.config.max_backoff_s)
                fields = ("pending", now + max(wait, min(retry_after, 3600.0)), None)
            with self.db.tx() as c:
                c.run("UPDATE webhook_deliveries SET status = ?, attempts = ?, next_at = ?,"
                      " last_status = ?, last_error = ?, delivered_at = ? WHERE id = ?",
                      (fields[0], attempt, fields[1], status, error, fields[2], d["id"]))
            if error is not None:
                log.warning("webhook delivery failed", extra={
                    "run_id": d["run_id"], "status": f"{d['event']} attempt {attempt}: {error}"})

    def secret(self, env: str | None) -> str:
        """The signing secret: the target's env var, the configured one, or this data
        dir's own (made on first use, readable only by its owner)."""
        for name in (env, self.config.secret_env):
            if name and os.environ.get(name):
                return os.environ[name]
        if not self.secret_file.exists():
            self.secret_file.parent.mkdir(parents=True, exist_ok=True)
            raw = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
            fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(raw)
            log.info("webhook signing secret written to the data dir (webhook-secret)")
        return Path(self.secret_file).read_text().strip()

    async def run_forever(self) -> None:
        """Scan and send every ``poll_s`` seconds (a lifespan task)."""
        if self._client is None:  # the client's first use would import httpcore on the loop
            await asyncio.to_thread(importlib.import_module, "httpcore")
        while True:
            try:
                self.scan()
                await self.send_due()
            except Exception:  # a failed pass is retried next time; the server carries on
                log.exception("webhook dispatch failed")
            await asyncio.sleep(self.config.poll_s)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()


def _event_fields(type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    keep = {"approval_requested": ("approval_id", "action", "agent", "risk", "policy_rule",
                                   "approver_group", "expires_at", "kind"),
            "approval_decided": ("approval_id", "decision", "message"),
            "run_failed": ("reason",), "run_completed": ("stop_reason", "usage")}
    return {k: data[k] for k in keep.get(type, ()) if k in data}


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
