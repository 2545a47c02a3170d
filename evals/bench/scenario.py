"""The scripted workloads: settings for a bench data dir and models that drive N rounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.config.settings import Settings, load_settings
from app.governance.policy.rules import PolicyConfig
from app.llm.provider import ProviderReply
from app.llm.scripted import Behaviour, progress
from graphs.ports import ModelRequest, ToolCall

TEAM = "support"
TASK = "Summarise what is known about the widget rollout, one area per step"
READS = {"researcher": ("lookup_customer", {"customer_id": "C-1001"}),
         "billing": ("lookup_order", {"order_id": "O-5002"}),
         "communications": ("lookup_customer", {"customer_id": "C-1001"}),
         "ticketing": ("find_tickets", {"customer_id": "C-1001"})}


def bench_settings(config: Path | None, data_dir: Path, *, max_rounds: int = 60,
                   max_parallel: int = 4, with_policy: bool = False,
                   latency_ms: float = 0.0) -> Settings:
    """The configured settings, offline, on ``data_dir``, with room for ``max_rounds``.

    Approval rules are dropped unless ``with_policy``: the loop figures measure the loop.
    """
    base = load_settings(config)
    teams = dict(base.teams)
    cfg = teams[TEAM]
    limits = cfg.limits.model_copy(update={"max_rounds": max_rounds,
                                           "max_parallel": max_parallel,
                                           "time_limit_s": 3600.0})
    teams[TEAM] = cfg.model_copy(update={"limits": limits})
    budgets = base.budgets.model_copy(update={"run_usd": None, "run_tokens": None,
                                              "run_wall_s": None, "tenant_daily_usd": None})
    update: dict[str, Any] = {"data_dir": data_dir, "offline": True, "teams": teams,
                              "budgets": budgets, "scripted_latency_ms": latency_ms}
    if not with_policy:
        update["policy"] = PolicyConfig()
    return base.model_copy(update=update)


def _user_prompt(request: ModelRequest) -> str:
    return "\n".join(str(m.get("content") or "") for m in request.messages
                     if m["role"] == "user")


def steps_plan(steps: int, agents: list[str], *, chained: bool) -> dict[str, Any]:
    """A task ledger of ``steps`` steps, each after the previous one when ``chained``."""
    plan = [{"id": f"S{i + 1}", "agent": agents[i % len(agents)],
             "goal": f"Report on area {i + 1} of the rollout",
             "depends_on": [f"S{i}"] if chained and i else []} for i in range(steps)]
    return {"facts": {"given": [TASK], "to_look_up": [f"area {i + 1}" for i in range(steps)],
                      "to_derive": [], "guesses": []}, "plan": plan}


def rounds_behaviour(steps: int, agents: list[str], *, chained: bool = True) -> Behaviour:
    """Models for a plan of ``steps`` steps: chained steps take one manager round each;
    unchained ones fan out together. Each step gets its own instruction (the same
    instruction twice would be caught as a loop), and each specialist answers at once."""
    ledger = json.dumps(steps_plan(steps, agents, chained=chained))

    def behaviour(request: ModelRequest) -> ProviderReply | None:
        if request.role == "manager.plan":
            return ProviderReply(content=ledger)
        if request.role == "manager.progress":
            out = progress(_user_prompt(request))
            for step in out["next_steps"]:
                step["instruction"] = f"Report on area {step['step_id'][1:]} of the rollout"
            return ProviderReply(content=json.dumps(out))
        if request.role.startswith("specialist."):
            # One read per step (a step is done only on a successful tool call), then report.
            if not any(m["role"] == "tool" for m in request.messages):
                tool, args = READS[request.role.removeprefix("specialist.")]
                return ProviderReply(content=None, tool_calls=[ToolCall(
                    id=f"call_{request.call_key}", name=tool, arguments=json.dumps(args))])
            user = next(str(m.get("content")) for m in request.messages if m["role"] == "user")
            return ProviderReply(content=f"DONE: {user.lower()} - nothing unusual found.")
        return None

    return behaviour
