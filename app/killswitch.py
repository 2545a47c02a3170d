"""The admin kill switch: pause new runs, or take a tool out of service at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from graphs.ports import GateAction, GateDecision, GateRequest, PolicyGate


@dataclass
class KillSwitch:
    """Live switches an admin flips; read by the run manager and the policy gate."""

    paused: bool = False
    disabled_tools: set[str] = field(default_factory=set)


class KillSwitchGate(PolicyGate):
    """Denies calls to disabled tools before the configured policy is asked."""

    def __init__(self, inner: PolicyGate, switch: KillSwitch) -> None:
        self.inner = inner
        self.switch = switch

    def check(self, request: GateRequest) -> GateDecision:
        """Deny a disabled tool; otherwise defer to the policy."""
        if request.tool in self.switch.disabled_tools:
            return GateDecision(GateAction.DENY, reason=f"{request.tool} is disabled by an admin",
                                rule="kill_switch")
        return self.inner.check(request)
