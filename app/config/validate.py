"""Cross-checks of a parsed configuration that field types alone cannot express."""

from __future__ import annotations

from pathlib import Path

import prompts
from app.config.settings_schema import Settings
from app.errors import ConfigError
from app.governance.policy.rules import compile_policy
from app.llm.catalog import Catalog
from graphs.ports import BUDGET_ACTION
from tools.registry import ToolRegistry

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
    static = _static_tools(s)
    if s.default_team not in s.teams:
        raise ConfigError(f"{src}: default_team: no team named {s.default_team!r}")
    for team_name, team in s.teams.items():
        for i, agent in enumerate(team.agents):
            where = f"{src}: teams.{team_name}.agents.{i}"
            for tool in agent.tools:
                _check_tool(s, static, tool, f"{where}.tools")
            try:
                own = s.project_path(agent.prompt)
                if not own.is_file():
                    prompts.read(agent.prompt)
            except (OSError, ValueError) as e:
                raise ConfigError(f"{where}.prompt: cannot read {agent.prompt!r} ({e})") from e
            if agent.model_role not in s.routing.roles:
                raise ConfigError(f"{where}.model_role: no routing.roles entry for "
                                  f"{agent.model_role!r}")
    _check_policy(s, static)
    for i, path in enumerate(s.offline_world.playbooks):
        if not s.project_path(path).exists():
            raise ConfigError(f"{src}: offline.playbooks.{i}: {path!r} not found "
                              f"(relative to {s.project_dir})")
    for i, server in enumerate(s.tools.mcp):
        if server.cwd and not s.project_path(server.cwd).is_dir():
            raise ConfigError(f"{src}: tools.mcp.{i}.cwd: no folder {server.cwd!r}")
        if server.command and _executable(server.command[0], s.project_dir) is None:
            raise ConfigError(f"{src}: tools.mcp.{i}.command: {server.command[0]!r} not found "
                              "(not on PATH, not a file of the project)")


def _executable(command: str, project_dir: Path) -> str | None:
    from app.tooling.config import executable

    return executable(command, project_dir)


def _static_tools(s: Settings) -> ToolRegistry:
    from app.tooling.packs import static_registry

    return static_registry(s, prepare=False)


def _check_tool(s: Settings, static: ToolRegistry, pattern: str, where: str) -> None:
    """Bundled and pack tools are known now; MCP tools only once their server is connected."""
    if static.expand(pattern) or pattern == BUDGET_ACTION:
        return
    if "." in pattern:
        server = pattern.split(".", 1)[0]
        if s.tools.server(server) is not None:
            return
        raise ConfigError(f"{where}: unknown MCP server {server!r} in {pattern!r} "
                          f"(servers: {', '.join(m.name for m in s.tools.mcp) or 'none'})")
    if any(c in pattern for c in "*?["):
        raise ConfigError(f"{where}: glob {pattern!r} matches no tool")
    raise ConfigError(f"{where}: unknown tool {pattern!r}")


def _check_policy(s: Settings, static: ToolRegistry) -> None:
    compile_policy(s.policy, s.source)
    agents = {a.name for t in s.teams.values() for a in t.agents} | {"manager"}
    for i, rule in enumerate(s.policy.rules):
        where = f"{s.source}: policy.rules.{i} ({rule.name})"
        for tool in rule.tools:
            # extend_budget is the manager's own request (graphs.approval), not a tool.
            _check_tool(s, static, tool, f"{where}.tools")
        for team in rule.teams:
            if team not in s.teams:
                raise ConfigError(f"{where}.teams: unknown team {team!r}")
        for agent in rule.agents:
            if agent not in agents:
                raise ConfigError(f"{where}.agents: unknown agent {agent!r}")
