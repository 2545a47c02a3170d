"""The policy gate the graphs call before every tool execution."""

from __future__ import annotations

import logging
from typing import Any

from celpy.adapter import json_to_cel

from app.governance.policy.rules import CompiledRule, PolicyConfig, compile_policy
from graphs.ports import GateAction, GateDecision, GateRequest, PolicyGate

log = logging.getLogger(__name__)

_ACTIONS = {"allow": GateAction.ALLOW, "deny": GateAction.DENY,
            "require_approval": GateAction.REQUIRE_APPROVAL}


class PolicyEngine(PolicyGate):
    """First matching rule decides. A condition that cannot be evaluated counts as a match for
    deny / require_approval rules and as no match for allow rules: errors fail closed."""

    def __init__(self, policy: PolicyConfig, source: str = "foreman.yaml") -> None:
        self.policy = policy
        self.rules: list[CompiledRule] = compile_policy(policy, source)

    def rule(self, name: str) -> CompiledRule | None:
        """The compiled rule of that name."""
        return next((r for r in self.rules if r.config.name == name), None)

    def check(self, request: GateRequest) -> GateDecision:
        """Decide for one validated tool call."""
        activation = json_to_cel({
            "tool": request.tool, "agent": request.agent, "team": request.team,
            "tenant": request.tenant, "risk": request.risk.value,
            "side_effect": request.side_effect.value, "args": _numbers_as_floats(request.args),
            "vars": _numbers_as_floats(self.policy.vars),
        })
        for rule in self.rules:
            c = rule.config
            if not rule.matches_target(request.tool, request.agent, request.team,
                                       request.tenant):
                continue
            if rule.program is not None and not self._holds(rule, activation):
                continue
            return GateDecision(_ACTIONS[c.action], reason=c.reason or f"rule {c.name}",
                                rule=c.name, approver_group=c.approver_group,
                                expires_in_s=c.expires_in_s)
        if self.policy.default == "deny":
            return GateDecision(GateAction.DENY, reason="no rule allows this call",
                                rule="default")
        return GateDecision(GateAction.ALLOW, reason="no rule matched", rule="default")

    @staticmethod
    def _holds(rule: CompiledRule, activation: Any) -> bool:
        assert rule.program is not None
        try:
            return bool(rule.program.evaluate(activation))
        except Exception:  # evaluation errors of any kind: decide by the rule's direction
            log.warning("policy condition failed to evaluate", extra={"rule": rule.config.name})
            return rule.config.action != "allow"


def _numbers_as_floats(value: Any) -> Any:
    """CEL does not compare int with double; policies compare amounts as doubles."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    return value
