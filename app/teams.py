"""Turn team configuration into the ``TeamSpec`` the graphs run."""

from __future__ import annotations

import prompts
from app.errors import ConfigError
from app.settings import Settings
from graphs.team import AgentSpec, Limits, TeamSpec
from tools.catalog import get_tool


def team_spec(settings: Settings, name: str) -> TeamSpec:
    """The runnable team called ``name``; ``ConfigError`` if there is none."""
    team = settings.teams.get(name)
    if team is None:
        raise ConfigError(f"no team named {name!r}; teams: {', '.join(settings.teams)}")
    agents = tuple(
        AgentSpec(
            name=a.name,
            description=a.description,
            instructions=prompts.read(a.prompt),
            tools=tuple(get_tool(t) for t in a.tools),
            model_role=a.model_role,
        )
        for a in team.agents
    )
    return TeamSpec(name=name, description=team.description, agents=agents,
                    limits=Limits(**team.limits.model_dump()), plan_review=team.plan_review)
