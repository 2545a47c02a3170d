"""Turn team configuration into the ``TeamSpec`` the graphs run."""

from __future__ import annotations

import prompts
from app.config.settings import Settings
from app.errors import ConfigError
from app.tooling.toolbox import agent_tools
from graphs.team import AgentSpec, Limits, TeamSpec
from tools.registry import ToolRegistry


def read_prompt(settings: Settings, name: str) -> str:
    """An agent's prompt: a file of the project (relative to foreman.yaml) or a bundled one."""
    own = settings.project_path(name)
    if own.is_file():
        return own.read_text(encoding="utf-8").strip()
    return prompts.read(name)


def team_spec(settings: Settings, name: str, registry: ToolRegistry) -> TeamSpec:
    """The runnable team called ``name``; ``ConfigError`` if there is none.

    Agents' tool lists may hold globs (``crm.*``); a name whose tool is not in the
    registry (its MCP server is down) is left off the agent's tools.
    """
    team = settings.teams.get(name)
    if team is None:
        raise ConfigError(f"no team named {name!r}; teams: {', '.join(settings.teams)}")
    agents = tuple(
        AgentSpec(
            name=a.name,
            description=a.description,
            instructions=read_prompt(settings, a.prompt),
            tools=tuple(registry.get(t) for t in agent_tools(registry, a.tools)),
            model_role=a.model_role,
        )
        for a in team.agents
    )
    return TeamSpec(name=name, description=team.description, agents=agents,
                    limits=Limits(**team.limits.model_dump()), plan_review=team.plan_review)
