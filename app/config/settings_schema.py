"""The shape of Foreman's configuration: one typed ``Settings`` object and its sections.

Reading it from ``foreman.yaml`` (plus ``FOREMAN_*`` environment overrides) and checking it
against the catalog, the tools and the policy is ``app.config.settings``; this module imports
neither, so the checks may use these types without an import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.config.auth_config import (
    AuthConfig,
)
from app.config.ops_config import (
    QueueConfig,
    RunsConfig,
    StorageConfig,
    TelemetryConfig,
    WebhooksConfig,
)
from app.errors import ConfigError
from app.governance.policy.rules import PolicyConfig
from app.tooling.config import OfflineConfig, ToolsConfig

DEFAULT_CONFIG = "foreman.yaml"
Tier = Literal["small", "medium", "large"]
TIERS: tuple[Tier, ...] = ("small", "medium", "large")
"""Tiers from cheapest to strongest."""
PolicyName = Literal["routed", "all-small", "all-large"]
FailureKind = Literal["schema_invalid", "tool_args_invalid", "stall", "verifier_rejected"]
FAILURE_KINDS: tuple[FailureKind, ...] = (
    "schema_invalid",
    "tool_args_invalid",
    "stall",
    "verifier_rejected",
)


class ModelEntry(BaseModel):
    """A catalog entry: litellm id (``scripted/...`` when offline), tier, prices, limits.

    Prices, context window and capabilities left unset come from litellm's bundled cost
    map; a model whose price is known neither here nor there is a config error.
    """

    name: str
    litellm_model: str
    tier: Tier = "small"
    api_base: str | None = None
    api_key_env: str | None = None
    input_cost_per_mtok: float | None = Field(default=None, ge=0)
    output_cost_per_mtok: float | None = Field(default=None, ge=0)
    cached_input_cost_per_mtok: float | None = Field(default=None, ge=0)
    context_window: int | None = Field(default=None, gt=0)
    supports_tools: bool | None = None
    supports_json: bool | None = None
    supports_json_schema: bool | None = None
    max_tokens: int = Field(default=1024, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)

    @property
    def scripted(self) -> bool:
        """Served by the built-in offline provider."""
        return self.litellm_model.startswith("scripted/")

    def has_credentials(self) -> bool:
        """A key in the environment, or a local server that needs none."""
        if self.scripted or self.api_base:
            return True
        return bool(self.api_key_env and os.environ.get(self.api_key_env))


class DifficultyConfig(BaseModel):
    """When the ``routed`` policy lifts a call one tier above its role's starting tier."""

    lift_at: float = Field(default=0.5, gt=0, le=1)


class EscalationConfig(BaseModel):
    """The cascade on typed failures: next tier for that step, at most ``max_per_step``."""

    max_per_step: int = Field(default=2, ge=0, le=5)
    on: list[FailureKind] = Field(default_factory=lambda: list(FAILURE_KINDS))


class FallbackConfig(BaseModel):
    """Provider-fault handling: retries, next deployment, circuit breaker, call timeout."""

    max_retries: int = Field(default=2, ge=0, le=10)
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=20.0, ge=0)
    jitter: float = Field(default=0.25, ge=0, le=1)
    retry_after_max_s: float = Field(default=60.0, ge=0)
    timeout_s: float | None = Field(default=None, gt=0)
    circuit_failures: int = Field(default=5, ge=1)
    circuit_window_s: float = Field(default=60.0, gt=0)
    circuit_cooldown_s: float = Field(default=30.0, ge=0)


class RoutingConfig(BaseModel):
    """Policy, role → model (its tier is the role's starting tier), escalation, fallbacks.

    ``specialist`` covers each ``specialist.<agent>`` not listed; ``offline`` names the
    scripted model standing in for each tier.
    """

    policy: PolicyName = "routed"
    roles: dict[str, str] = Field(default_factory=dict)
    offline: dict[Tier, str] = Field(default_factory=dict)
    difficulty: DifficultyConfig = Field(default_factory=DifficultyConfig)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    fallbacks: FallbackConfig = Field(default_factory=FallbackConfig)
    cache: bool = False


class BudgetsConfig(BaseModel):
    """Hard caps per run and per tenant per (UTC) day; ``None`` means no cap."""

    run_usd: float | None = Field(default=None, gt=0)
    run_tokens: int | None = Field(default=None, gt=0)
    run_rounds: int | None = Field(default=None, gt=0)
    run_wall_s: float | None = Field(default=None, gt=0)
    tenant_daily_usd: float | None = Field(default=None, gt=0)
    warn_at: float = Field(default=0.8, gt=0, le=1)


class AgentConfig(BaseModel):
    """A specialist: name, description the manager reads, prompt file, allowed tools, model role."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    description: str = Field(min_length=1)
    prompt: str
    tools: list[str] = Field(default_factory=list)
    model_role: str = "specialist"


class LimitsConfig(BaseModel):
    """Bounds of a run (see ``graphs.team.Limits``)."""

    max_rounds: int = Field(default=12, ge=1, le=200)
    max_stalls: int = Field(default=3, ge=1)
    max_replans: int = Field(default=2, ge=0)
    max_parallel: int = Field(default=4, ge=1, le=16)
    specialist_max_steps: int = Field(default=8, ge=1, le=50)
    specialist_max_repeats: int = Field(default=2, ge=1, le=10)
    time_limit_s: float = Field(default=600.0, gt=0)


class TeamConfig(BaseModel):
    """A team: its agents and limits."""

    description: str
    agents: list[AgentConfig] = Field(min_length=1)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    plan_review: bool = False

    @model_validator(mode="after")
    def _unique_agents(self) -> TeamConfig:
        names = [a.name for a in self.agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate agent names: {dupes}")
        return self


class ServerConfig(BaseModel):
    """Where ``foreman serve`` listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)


class KnowledgeConfig(BaseModel):
    """Document store and embeddings: embedded Chroma under ``data_dir`` unless
    ``chroma_url`` names a Chroma server; the bundled offline model unless ``litellm``."""

    embedder: Literal["local", "litellm"] = "local"
    embedding_model: str = "openai/text-embedding-3-small"
    api_key_env: str | None = "OPENAI_API_KEY"
    api_base: str | None = None
    chroma_url: str | None = None
    chunk_chars: int = Field(default=500, ge=100, le=8000)
    overlap_chars: int = Field(default=100, ge=0, le=2000)
    ingest_bundled: bool = True
    memory_recall: int = Field(default=5, ge=0, le=50)

    @model_validator(mode="after")
    def _overlap_fits(self) -> KnowledgeConfig:
        if self.overlap_chars >= self.chunk_chars:
            raise ValueError("overlap_chars must be smaller than chunk_chars")
        return self



class Settings(BaseSettings):
    """Everything Foreman is configured with; built by ``app.config.settings.load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix="FOREMAN_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    config_path: Path | None = None
    data_dir: Path = Path(".foreman")
    database_url: str | None = None
    offline: bool = False
    scripted_latency_ms: float = Field(default=0.0, ge=0)
    scripted_weak_roles: list[str] = Field(default_factory=list)
    # A specialist's step saves its supersteps only where it pauses or fails, and a finished
    # run's specialist-loop checkpoints are dropped; the root history is kept. False keeps
    # every step's supersteps, for inspection, at the cost of their writes.
    prune_checkpoints: bool = True
    default_team: str = "support"
    models: list[ModelEntry] = Field(default_factory=list)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    teams: dict[str, TeamConfig] = Field(default_factory=dict)
    server: ServerConfig = Field(default_factory=ServerConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    runs: RunsConfig = Field(default_factory=RunsConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    # The file's `offline:` mapping (the bool above is FOREMAN_OFFLINE); see load_settings.
    offline_world: OfflineConfig = Field(default_factory=OfflineConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file: the file arrives as init kwargs.
        return (env_settings, init_settings)

    def model(self, name: str) -> ModelEntry:
        """The catalog entry of that name."""
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(f"{self.source}: no model named {name!r} in models")

    def with_policy(self, policy: PolicyName) -> Settings:
        """A copy routed by another policy (``foreman run --policy``)."""
        return self.model_copy(
            update={"routing": self.routing.model_copy(update={"policy": policy})}
        )

    @property
    def project_dir(self) -> Path:
        """The folder relative paths in the config file resolve against."""
        return (self.config_path.parent if self.config_path else Path()).resolve()

    def project_path(self, relative: str | Path) -> Path:
        """A path from the config file, resolved against the project folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.project_dir / path

    @property
    def source(self) -> str:
        """The config file's name, for error messages."""
        return str(self.config_path or DEFAULT_CONFIG)
