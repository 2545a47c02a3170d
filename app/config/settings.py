"""One typed ``Settings`` object from ``foreman.yaml`` plus ``FOREMAN_*`` environment overrides.

The types are ``app.config.settings_schema``'s (named here too, where every caller imports them
from); :func:`load_settings` reads the file, applies the environment and runs the
cross-checks of ``app.config.validate`` (models, routing, teams, tools, policy).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.config.settings_schema import (
    DEFAULT_CONFIG,
    FAILURE_KINDS,
    TIERS,
    AgentConfig,
    BudgetsConfig,
    DifficultyConfig,
    EscalationConfig,
    FailureKind,
    FallbackConfig,
    KnowledgeConfig,
    LimitsConfig,
    ModelEntry,
    PolicyName,
    RoutingConfig,
    ServerConfig,
    Settings,
    TeamConfig,
    Tier,
)
from app.config.validate import check_settings
from app.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG", "FAILURE_KINDS", "TIERS", "AgentConfig", "BudgetsConfig",
    "DifficultyConfig", "EscalationConfig", "FailureKind", "FallbackConfig",
    "KnowledgeConfig", "LimitsConfig", "ModelEntry", "PolicyName", "RoutingConfig",
    "ServerConfig", "Settings", "TeamConfig", "Tier", "load_settings",
]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: file not found") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def _explain(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(root)"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{path}: {key}: {first['msg']}{more}"


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the config file (``--config``, ``FOREMAN_CONFIG`` or ``./foreman.yaml``) and validate.

    Raises ``ConfigError`` naming the file, the key and the reason.
    """
    chosen = Path(path or os.environ.get("FOREMAN_CONFIG") or DEFAULT_CONFIG)
    data = _read_yaml(chosen)
    data["config_path"] = chosen
    offline = data.get("offline")
    if isinstance(offline, dict):  # `offline: {enabled?, playbooks}` is the project's world
        offline = dict(offline)
        if "enabled" in offline:
            data["offline"] = offline.pop("enabled")
        else:
            data.pop("offline")
        data["offline_world"] = offline
    data_dir = data.get("data_dir")
    if isinstance(data_dir, str) and not Path(data_dir).expanduser().is_absolute():
        data["data_dir"] = chosen.parent / data_dir  # relative to the file, not the shell
    try:
        settings = Settings(**data)
    except ValidationError as e:
        raise ConfigError(_explain(chosen, e)) from e
    check_settings(settings)
    return settings
