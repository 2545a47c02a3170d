"""What every manager node shares: the prompt views of the state, the routing signals, and
the ways a node ends a run (stop, or ask for more budget)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.types import Command

import prompts
from graphs.errors import BudgetExhausted, ModelCallError
from graphs.ports import Message
from graphs.state import ManagerState
from graphs.team import TeamSpec
from graphs.views import ledger_facts, plan_status, prompt_json, result_lines, status_lines
from graphs.views import recent_results as recent_view


def stop_reason(err: ModelCallError) -> str:
    """The stop reason of a run whose model call failed."""
    return "budget_exhausted" if isinstance(err, BudgetExhausted) else "model_unavailable"


def stop(reason: str, **update: Any) -> Command[str]:
    """End the run: go to the final answer with ``reason``."""
    return Command(goto="final", update={**update, "stop_reason": reason})


def out_of_budget(resume_at: str, err: BudgetExhausted) -> Command[str]:
    """Ask for a budget extension, then come back to ``resume_at``."""
    return Command(goto="budget", update={"budget_resume": resume_at,
                                          "notes": [f"out of budget: {err}"]})


@dataclass(frozen=True)
class Manager:
    """The manager's fixed parts: its team, its system message, its agents' names."""

    team: TeamSpec
    system: Message
    names: list[str]

    @classmethod
    def of(cls, team: TeamSpec) -> Manager:
        """The manager of ``team``, with its system prompt rendered."""
        agents = [{"name": a.name, "description": a.description} for a in team.agents]
        system: Message = {"role": "system", "content": prompts.render(
            "manager_system.j2", team=team.name, agents=agents)}
        return cls(team=team, system=system, names=team.agent_names)

    def views(self, state: ManagerState) -> dict[str, Any]:
        """The state as the manager's prompts show it: compact and bounded."""
        limits = self.team.limits
        results = state.get("results", [])
        recent, omitted = recent_view(results, limits.recent_results, limits.summary_chars)
        status = plan_status(state["ledger"], results)
        return {
            "task": state["task"],
            "ledger_json": prompt_json(state["ledger"]),
            "facts_json": prompt_json(ledger_facts(state["ledger"], state["task"])),
            "status_text": status_lines(status),
            "results_text": result_lines(recent),
            "omitted": omitted,
            # Whether the record shows a step in trouble: only then do the rules for dropping
            # a step or ending the run as blocked apply, so only then are they spelled out.
            "troubled": any(s["state"] not in ("done", "not started") for s in status)
            or any(r["status"] != "done" for r in recent),
        }

    def signals(self, state: ManagerState, **extra: Any) -> dict[str, Any]:
        """What the router reads to pick a model for a manager call."""
        return {"round": state.get("round", 0), "replans": state.get("replans", 0),
                "stalls": state.get("stall_count", 0), "task_chars": len(state["task"]),
                "agents": len(self.names), **extra}

    @staticmethod
    def failure_signals(state: ManagerState) -> dict[str, Any]:
        """What went wrong last round, so the router can give this round a stronger model."""
        failure = state.get("last_failure")
        return {"failure": failure, "rejections": state.get("rejections", 0)} if failure else {}
