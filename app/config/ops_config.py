"""How Foreman runs: storage pools, run limits, the queue, telemetry and webhooks."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator


class StorageConfig(BaseModel):
    """Postgres pool bounds (used when ``database_url`` is set) and SQLite durability.

    ``sqlite_synchronous`` applies to the app tables and the checkpoints (both WAL):
    ``normal`` (default) syncs to disk at WAL checkpoints, so a committed step survives a
    killed process but the last few may roll back on power loss; ``full`` syncs every
    commit, at several milliseconds per step on ordinary disks.
    """

    pool_min_size: int = Field(default=1, ge=1, le=100)
    pool_max_size: int = Field(default=10, ge=1, le=200)
    sqlite_synchronous: Literal["normal", "full"] = "normal"


class RunsConfig(BaseModel):
    """The run manager: concurrency, per-tenant rate limit, kill switch at start."""

    max_concurrent: int = Field(default=4, ge=1, le=256)
    rate_limit_per_minute: int = Field(default=60, ge=1)
    paused: bool = False
    disabled_tools: list[str] = Field(default_factory=list)
    wait_timeout_s: float = Field(default=600.0, gt=0)
    approval_ttl_s: float = Field(default=86_400.0, gt=0)  # when the rule names none
    approval_sweep_s: float = Field(default=5.0, gt=0)  # how often expiries are checked


class QueueConfig(BaseModel):
    """Who executes runs, and the limits and timeouts of ownership (docs/scaling.md).

    ``api_executes`` off (``foreman serve --workers 0``) makes the API enqueue runs for
    ``foreman worker`` processes (needs ``database_url``). A claim not heartbeated for
    ``stall_timeout_s`` is taken over; ``tenant_max_running`` caps one tenant's running
    runs across every process. A worker runs at CPU niceness ``worker_nice``: on a host it
    shares with an API replica or the database, they get the CPU first.
    """

    api_executes: bool = True
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    worker_nice: int = Field(default=10, ge=0, le=19)
    heartbeat_s: float = Field(default=2.0, gt=0)
    stall_timeout_s: float = Field(default=10.0, gt=0)
    tenant_max_running: int | None = Field(default=None, ge=1)
    notify_every_ms: float = Field(default=50.0, ge=1)

    @model_validator(mode="after")
    def _stall_after_beats(self) -> QueueConfig:
        if self.stall_timeout_s < 2 * self.heartbeat_s:
            raise ValueError("stall_timeout_s must be at least twice heartbeat_s")
        return self


class TelemetryConfig(BaseModel):
    """OpenTelemetry traces (also on whenever ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set)."""

    enabled: bool = False
    capture_content: bool = False  # prompts, responses, tool arguments/results (redacted)
    service_name: str = "foreman"


WebhookEvent = Literal["run.completed", "run.failed", "run.cancelled", "run.interrupted",
                       "approval.expired"]


class WebhookSubscription(BaseModel):
    """A tenant's standing subscription: these events of its runs go to ``url``."""

    tenant: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str = Field(max_length=2048)
    events: list[WebhookEvent] = Field(default_factory=list)  # empty: every event
    secret_env: str | None = None  # signs this subscription instead of the shared secret

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use secret_env")
        return url


class WebhooksConfig(BaseModel):
    """Signed webhook deliveries (Standard Webhooks) with retries."""

    # The env var holding the signing secret; unset: a secret kept in the data dir.
    secret_env: str = "FOREMAN_WEBHOOK_SECRET"  # noqa: S105 - a variable name, not a secret
    subscriptions: list[WebhookSubscription] = Field(default_factory=list)
    allow_private_targets: bool = False  # run-body URLs on loopback / private addresses
    max_attempts: int = Field(default=8, ge=1, le=50)
    backoff_s: float = Field(default=2.0, gt=0)
    max_backoff_s: float = Field(default=600.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    poll_s: float = Field(default=1.0, gt=0, le=60)
