"""Figure 3: four independent sub-goals with 300 ms models, against one sub-goal and
against the same task forced sequential (``max_parallel=1``)."""

from __future__ import annotations

from pathlib import Path

from app.llm.scripted import ScriptedProvider
from app.services import open_services
from evals.bench.loop import Switch, _foreman, _runner, replace_settings
from evals.bench.scenario import TEAM, bench_settings, rounds_behaviour
from evals.bench.stats import Row, Stat, ratios, within

LATENCY_S = 0.3
SUBGOALS = 4


async def fanout_figures(config: Path | None, workdir: Path, reps: int) -> list[Row]:
    """Wall time of the fanned-out task, the single sub-goal, and the sequential task."""
    settings = bench_settings(config, workdir / "fanout")
    agents = [a.name for a in settings.teams[TEAM].agents]
    teams = dict(settings.teams)
    team = teams[TEAM]
    teams[TEAM] = team.model_copy(update={"limits": team.limits.model_copy(
        update={"max_parallel": 1})})
    switch = Switch()
    wide = rounds_behaviour(SUBGOALS, agents, chained=False)
    single = rounds_behaviour(1, agents)
    seconds: dict[str, list[float]] = {"fan-out": [], "single": [], "sequential": []}
    provider = ScriptedProvider(switch, latency_s=LATENCY_S)
    async with open_services(settings, scripted=provider) as services:
        sequential = _runner(services, replace_settings(settings, teams=teams),
                             services.runner.saver)
        for _ in range(reps):
            switch.current = wide
            seconds["fan-out"].append((await _foreman(services.runner, 1))[0])
            seconds["sequential"].append((await _foreman(sequential, SUBGOALS))[0])
            switch.current = single
            seconds["single"].append((await _foreman(services.runner, 1))[0])
    vs_single = ratios(seconds["fan-out"], seconds["single"])
    vs_seq = ratios(seconds["fan-out"], seconds["sequential"])
    return [
        Row("3 fan-out", f"{SUBGOALS} independent sub-goals vs 1, {LATENCY_S * 1000:.0f} ms models",
            Stat.of(seconds["fan-out"]), "s", Stat.of(seconds["single"]), "one sub-goal",
            vs_single, "<= 1.35x", within(vs_single, 1.35)),
        Row("3 fan-out", f"{SUBGOALS} sub-goals fanned out vs forced sequential",
            Stat.of(seconds["fan-out"]), "s", Stat.of(seconds["sequential"]),
            "max_parallel=1", vs_seq, "", None),
    ]
