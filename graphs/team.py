"""A team as the graphs see it: agents with their tools, and the run's limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.spec import ToolSpec


@dataclass(frozen=True)
class AgentSpec:
    """A specialist: the manager reads ``description``; ``instructions`` is its prompt."""

    name: str
    description: str
    instructions: str
    tools: tuple[ToolSpec, ...]
    model_role: str = "specialist"

    def tool(self, name: str) -> ToolSpec | None:
        """The allowed tool of that name (or wire name), or None when it is not on the list."""
        return next((t for t in self.tools if name in (t.name, t.wire_name)), None)


@dataclass(frozen=True)
class Limits:
    """Bounds that guarantee every run ends."""

    max_rounds: int = 12
    max_stalls: int = 3
    max_replans: int = 2
    max_parallel: int = 4
    specialist_max_steps: int = 8
    specialist_max_repeats: int = 2  # repeats of a refused call before the step is blocked
    time_limit_s: float = 600.0
    recent_results: int = 6
    summary_chars: int = 600


@dataclass(frozen=True)
class TeamSpec:
    """The agents a manager can delegate to, and the limits of its runs."""

    name: str
    description: str
    agents: tuple[AgentSpec, ...]
    limits: Limits = field(default_factory=Limits)
    plan_review: bool = False

    def agent(self, name: str) -> AgentSpec | None:
        """The agent of that exact name, if any."""
        return next((a for a in self.agents if a.name == name), None)

    @property
    def agent_names(self) -> list[str]:
        """Agent names in configured order."""
        return [a.name for a in self.agents]
