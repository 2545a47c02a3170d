"""Policy configuration and its compilation into checked CEL programs.

Conditions are CEL (cel-python): a small, side-effect-free expression language, so a rule
can inspect a call's arguments without anything like ``eval``. Every rule is compiled at
start-up; a rule that does not compile stops the process with the rule's name.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Literal

import celpy
from pydantic import BaseModel, Field, field_validator

from app.errors import ConfigError

Action = Literal["allow", "deny", "require_approval"]


class RuleConfig(BaseModel):
    """One rule. Empty match lists mean "any"; ``when`` is a CEL condition over the call."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    tools: list[str] = Field(default_factory=list)
    agents: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    tenants: list[str] = Field(default_factory=list)
    when: str | None = None
    action: Action
    reason: str = ""
    approver_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,79}$")
    expires_in_s: int = Field(default=86_400, gt=0)
    admin_may_self_approve: bool = False
    admin_override: bool = False  # a tenant admin outside approver_group may decide

    @field_validator("when")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None


class PolicyConfig(BaseModel):
    """Ordered rules (first match wins), shared values for conditions, and the default."""

    vars: dict[str, Any] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list)
    default: Literal["allow", "deny"] = "allow"


@dataclass(frozen=True)
class CompiledRule:
    """A rule with its condition compiled."""

    config: RuleConfig
    program: celpy.Runner | None

    def matches_target(self, tool: str, agent: str, team: str, tenant: str) -> bool:
        """Whether the rule's tool/agent/team/tenant lists admit this call."""
        c = self.config
        if c.tools and not any(t == tool or fnmatch.fnmatchcase(tool, t) for t in c.tools):
            return False  # tool entries may be globs (crm.*)
        return all(not allowed or value in allowed for allowed, value in (
            (c.agents, agent), (c.teams, team), (c.tenants, tenant)))


def compile_policy(policy: PolicyConfig, source: str) -> list[CompiledRule]:
    """Compile every rule's condition; ``ConfigError`` names the rule that fails."""
    env = celpy.Environment()
    compiled: list[CompiledRule] = []
    seen: set[str] = set()
    for i, rule in enumerate(policy.rules):
        where = f"{source}: policy.rules.{i} ({rule.name})"
        if rule.name in seen:
            raise ConfigError(f"{where}: duplicate rule name")
        seen.add(rule.name)
        program = None
        if rule.when is not None:
            try:
                program = env.program(env.compile(rule.when))
            except Exception as e:  # cel-python raises several parser error types
                raise ConfigError(f"{where}: condition does not compile: "
                                  f"{str(e).splitlines()[0]}") from e
        compiled.append(CompiledRule(rule, program))
    return compiled
