"""Figure 0: Foreman against autogen's MagenticOneGroupChat on the same script.

Two agents, a fixed two-step plan, R rounds: each round the manager names one agent
(alternating), the agent calls one read tool and reports. Both sides run on instant scripted
models: Foreman on its built-in scripted provider, Magentic-One on autogen-ext's
``ReplayChatCompletionClient``. autogen comes from the ``bench`` dependency group
(``make bench``); without it the figure is skipped with a note.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from app.config.settings import Settings
from app.knowledge.runtime import TenantMemory
from app.llm.provider import ProviderReply
from app.llm.scripted import Behaviour, ScriptedProvider
from app.runs.runner import Runner
from app.services import Services, open_services
from evals.bench.loop import Switch
from evals.bench.scenario import READS, TASK, TEAM, bench_settings
from evals.bench.stats import Row, Stat, ratios, within
from graphs.ports import ModelRequest, ToolCall

ROUNDS = (5, 10, 20, 40)
AGENTS = ("researcher", "billing")
FIGURE = "0 vs Magentic-One"


def _round_of(request: ModelRequest) -> int:
    """The round number the progress prompt opens with ("Round N of at most M.")."""
    text = next(str(m.get("content") or "") for m in request.messages if m["role"] == "user")
    return int(text.split(maxsplit=2)[1])


def _instruction(n: int) -> str:
    return f"Report on area {n} of the rollout"


def foreman_behaviour(rounds: int) -> Behaviour:
    """Foreman's scripted models for the script: a two-step plan, ``rounds`` delegations
    alternating between the steps, then satisfied."""
    plan = {"facts": {"given": [TASK], "to_look_up": ["the rollout"], "to_derive": [],
                      "guesses": []},
            "plan": [{"id": f"S{i + 1}", "agent": a, "goal": f"Report on the rollout as {a}",
                      "depends_on": []} for i, a in enumerate(AGENTS)]}

    def behaviour(request: ModelRequest) -> ProviderReply | None:
        if request.role == "manager.plan":
            return ProviderReply(content=json.dumps(plan))
        if request.role == "manager.progress":
            n = _round_of(request)
            done = n > rounds
            steps = [] if done else [{"step_id": f"S{2 - n % 2}", "agent": AGENTS[1 - n % 2],
                                      "instruction": _instruction(n), "reason": "next area"}]
            return ProviderReply(content=json.dumps({
                "is_request_satisfied": {"answer": done, "reason": "all areas reported"},
                "is_in_loop": {"answer": False, "reason": "a new area each round"},
                "is_progress_being_made": {"answer": True, "reason": "one area per round"},
                "next_steps": steps}))
        if request.role.startswith("specialist."):
            if not any(m["role"] == "tool" for m in request.messages):
                tool, args = READS[request.role.removeprefix("specialist.")]
                return ProviderReply(content=None, tool_calls=[ToolCall(
                    id=f"call_{request.call_key}", name=tool, arguments=json.dumps(args))])
            user = next(str(m.get("content")) for m in request.messages if m["role"] == "user")
            return ProviderReply(content=f"DONE: {user.lower()} - nothing unusual found.")
        return None

    return behaviour


def _two_agent_settings(settings: Settings) -> Settings:
    teams = dict(settings.teams)
    team = teams[TEAM]
    teams[TEAM] = team.model_copy(update={"agents": [a for a in team.agents
                                                     if a.name in AGENTS]})
    return settings.model_copy(update={"teams": teams})


async def _foreman_run(runner: Runner, services: Services, rounds: int) -> tuple[float, int]:
    """Seconds of one run and the characters of every prompt it sent."""
    started = time.perf_counter()
    result = await runner.start(TASK, TEAM)
    seconds = time.perf_counter() - started
    if result.status != "success" or result.stop_reason != "satisfied":
        raise RuntimeError(f"{rounds}-round run ended {result.status}/{result.stop_reason}")
    if runner.knowledge is not None:
        await TenantMemory(runner.knowledge, "default").flush()
    calls = [e["data"] for e in services.store.events(result.run_id) if e["type"] == "model_call"]
    delegations = sum(1 for c in calls if c["role"].startswith("specialist.")) // 2
    if delegations != rounds:
        raise RuntimeError(f"Foreman delegated {delegations} times, not {rounds}")
    return seconds, sum(int(c["prompt_chars"]) for c in calls)


def _ledger(n: int, rounds: int) -> str:
    done = n > rounds
    return json.dumps({
        "is_request_satisfied": {"answer": done, "reason": "all areas reported"},
        "is_in_loop": {"answer": False, "reason": "a new area each round"},
        "is_progress_being_made": {"answer": True, "reason": "one area per round"},
        "instruction_or_question": {"answer": "" if done else _instruction(n),
                                    "reason": "next area"},
        "next_speaker": {"answer": AGENTS[1 - n % 2], "reason": "owns the step"}})


def _chars(calls: list[dict[str, Any]]) -> int:
    """Prompt characters as Foreman counts them: message text (tool results included,
    tool-call arguments and tool schemas not)."""
    total = 0
    for call in calls:
        for m in call["messages"]:
            content = m.content
            if isinstance(content, str):
                total += len(content)
            elif isinstance(content, list):
                total += sum(len(str(getattr(r, "content", ""))) for r in content
                             if not hasattr(r, "arguments"))
    return total


def _magentic_team(rounds: int) -> tuple[Any, list[Any]]:
    """A MagenticOneGroupChat of two tool-using agents on replay clients for ``rounds``."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.teams import MagenticOneGroupChat
    from autogen_core import FunctionCall
    from autogen_core.models import CreateResult, ModelFamily, ModelInfo, RequestUsage
    from autogen_core.tools import FunctionTool
    from autogen_ext.models.replay import ReplayChatCompletionClient

    info = ModelInfo(vision=False, function_calling=True, json_output=False,
                     family=ModelFamily.UNKNOWN, structured_output=False)
    plan = "\n".join(f"- {a}: report on the rollout" for a in AGENTS)
    manager = ReplayChatCompletionClient(
        ["Given: the task. To look up: the rollout.", plan,
         *(_ledger(n, rounds) for n in range(1, rounds + 2)),
         "All areas of the rollout were reported; nothing unusual found."], model_info=info)
    clients = [manager]
    agents = []
    for i, name in enumerate(AGENTS):
        tool_name, args = READS[name]
        turns = len(range(i + 1, rounds + 1, 2))
        script: list[str | CreateResult] = []
        for t in range(turns):
            script.append(CreateResult(
                finish_reason="function_calls", usage=RequestUsage(0, 0), cached=False,
                content=[FunctionCall(id=f"call_{name}_{t}", name=tool_name,
                                      arguments=json.dumps(args))]))
            script.append(f"DONE: {_instruction(i + 1 + 2 * t).lower()} - nothing unusual found.")
        client = ReplayChatCompletionClient(script, model_info=info)
        clients.append(client)

        tool = FunctionTool(_tool_fn(tool_name, list(args)), description=f"Reads {tool_name}.")
        agents.append(AssistantAgent(name, model_client=client, tools=[tool],
                                     reflect_on_tool_use=True,
                                     description=f"The {name} agent: reads records."))
    team = MagenticOneGroupChat(agents, model_client=manager, max_turns=rounds + 5)
    return team, clients


def _tool_fn(name: str, params: list[str]) -> Any:
    """An instant read tool with the given keyword parameters (autogen reads the signature)."""
    assert params == [params[0]]
    param = params[0]
    namespace: dict[str, Any] = {"json": json}
    source = (f"def {name}({param}: str) -> str:\n"
              f"    return json.dumps({{'found': True, {param!r}: {param}}})\n")
    exec(compile(source, f"<bench tool {name}>", "exec"), namespace)  # noqa: S102 - fixed text
    return namespace[name]


async def _magentic_run(rounds: int) -> tuple[float, int]:
    team, clients = _magentic_team(rounds)
    started = time.perf_counter()
    result = await team.run(task=TASK)
    seconds = time.perf_counter() - started
    turns = sum(1 for m in result.messages if getattr(m, "source", "") in AGENTS
                and type(m).__name__ == "TextMessage")
    if turns != rounds:
        raise RuntimeError(f"Magentic-One ran {turns} agent turns, not {rounds}")
    return seconds, _chars([c for client in clients for c in client.create_calls])


async def magentic_figures(config: Path | None, workdir: Path, reps: int) -> list[Row]:
    """Rows of figure 0, or none (with a note) when autogen is not installed."""
    try:
        import autogen_agentchat  # noqa: F401
    except ImportError:
        print("figure 0 skipped: autogen is in the bench dependency group; run `make bench` "
              "or `uv run --frozen --no-default-groups --group bench python -m evals.bench "
              "--only 0`", file=sys.stderr)
        return []
    # The replay client warns on every tool-result message it cannot split into words.
    logging.getLogger("autogen_core.events").setLevel(logging.ERROR)
    logging.getLogger("autogen_core").setLevel(logging.ERROR)
    settings = _two_agent_settings(bench_settings(config, workdir / "magentic",
                                                  max_rounds=max(ROUNDS) + 5))
    switch = Switch()
    ms: dict[tuple[str, int], list[float]] = {}
    chars: dict[tuple[str, int], int] = {}
    async with open_services(settings, scripted=ScriptedProvider(switch)) as services:
        r = services.runner
        memory = Runner(settings, services.store, InMemorySaver(), r.router, r.gate,
                        r.registry, knowledge=r.knowledge)
        variants = {"foreman/memory": memory, "foreman/sqlite": r}
        switch.current = foreman_behaviour(3)
        for runner in variants.values():  # warm-up: templates, schemas, first connections
            await _foreman_run(runner, services, 3)
        await _magentic_run(3)
        for rounds in ROUNDS:
            switch.current = foreman_behaviour(rounds)
            for _ in range(reps):
                for name, runner in variants.items():
                    seconds, total = await _foreman_run(runner, services, rounds)
                    ms.setdefault((name, rounds), []).append(seconds * 1000 / rounds)
                    chars[(name, rounds)] = total
                seconds, total = await _magentic_run(rounds)
                ms.setdefault(("magentic", rounds), []).append(seconds * 1000 / rounds)
                chars[("magentic", rounds)] = total
    return _rows(ms, chars)


def _rows(ms: dict[tuple[str, int], list[float]], chars: dict[tuple[str, int], int]) -> list[Row]:
    rows = []
    for name, label in (("foreman/memory", "in-memory saver"),
                        ("foreman/sqlite", "SQLite saver, durable")):
        for rounds in ROUNDS:
            ratio = ratios(ms[(name, rounds)], ms[("magentic", rounds)])
            goal = name == "foreman/memory"
            rows.append(Row(FIGURE, f"ms/round, {label}, {rounds} rounds",
                            Stat.of(ms[(name, rounds)]), "ms/round",
                            Stat.of(ms[("magentic", rounds)]), "MagenticOneGroupChat", ratio,
                            "<= 1.0x" if goal else "", within(ratio, 1.0) if goal else None))
    for rounds in ROUNDS:
        ours, theirs = chars[("foreman/memory", rounds)], chars[("magentic", rounds)]
        goal = rounds == max(ROUNDS)
        ratio = Stat.of([ours / theirs])
        rows.append(Row(FIGURE, f"total prompt chars per run, {rounds} rounds", Stat.of([ours]),
                        "chars", Stat.of([theirs]), "MagenticOneGroupChat", ratio,
                        "<= 0.5x" if goal else "", within(ratio, 0.5) if goal else None))
    return rows
