"""Cross-checks of a parsed configuration that field types alone cannot express."""

from __future__ import annotations

from typing import TYPE_CHECKING

import prompts
from app.errors import ConfigError
from app.llm.catalog import Catalog
from app.policy.rules import compile_policy
from graphs.ports import BUDGET_ACTION
from tools.catalog import tool_names

if TYPE_CHECKING:
    from app.settings import Settings

MANAGER_ROLES = ("manager.plan", "manager.progress", "manager.verify", "manager.final")


def check_settings(s: Settings) -> None:
    """Raise ``ConfigError`` (file, key, reason) at the first inconsistency."""
    src = s.source
    names = [m.name for m in s.models]
    for i, m in enumerate(s.models):
        if names.count(m.name) > 1:
            raise ConfigError(f"{src}: models.{i}.name: duplicate model name {m.name!r}")
    Catalog(s.models, src)  # every model must have a known price
    for role, model in s.routing.roles.items():
        if model not in names:
            raise ConfigError(f"{src}: routing.roles.{role}: unknown model {model!r}")
    for role in (*MANAGER_ROLES, "specialist"):
        if role not in s.routing.roles:
            raise ConfigError(f"{src}: routing.roles.{role}: missing (every role needs a model)")
    for tier, model in s.routing.offline.items():
        if model not in names or not s.model(model).scripted:
            raise ConfigError(f"{src}: routing.offline.{tier}: {model!r} is not a scripted model")
    if not s.routing.offline:
        raise ConfigError(f"{src}: routing.offline: name the scripted model for each tier")
    known = set(tool_names())
    if s.default_team not in s.teams:
        raise ConfigError(f"{src}: default_team: no team named {s.default_team!r}")
    for team_name, team in s.teams.items():
        for i, agent in enumerate(team.agents):
            where = f"{src}: teams.{team_name}.agents.{i}"
            for tool in agent.tools:
                if tool not in known:
                    raise ConfigError(f"{where}.tools: unknown tool {tool!r}")
            try:
                prompts.read(agent.prompt)
            except (OSError, ValueError) as e:
                raise ConfigError(f"{where}.prompt: cannot read {agent.prompt!r} ({e})") from e
            if agent.model_role not in s.routing.roles:
                raise ConfigError(f"{where}.model_role: no routing.roles entry for "
                                  f"{agent.model_role!r}")
    # extend_budget is the manager's own request (graphs.approval), not an agent's tool.
    _check_policy(s, known | {BUDGET_ACTION})


def _check_policy(s: Settings, known_tools: set[str]) -> None:
    compile_policy(s.policy, s.source)
    agents = {a.name for t in s.teams.values() for a in t.agents} | {"manager"}
    for i, rule in enumerate(s.policy.rules):
        where = f"{s.source}: policy.rules.{i} ({rule.name})"
        for tool in rule.tools:
            if tool not in known_tools:
                raise ConfigError(f"{where}.tools: unknown tool {tool!r}")
        for team in rule.teams:
            if team not in s.teams:
                raise ConfigError(f"{where}.teams: unknown team {team!r}")
        for agent in rule.agents:
            if agent not in agents:
                raise ConfigError(f"{where}.agents: unknown agent {agent!r}")
