"""Figures 1, 2 and 5: overhead per manager round, prompt growth, checkpoint bytes.

One set of N-round runs feeds all three: Foreman through ``Runner`` (the product path:
journal, events, memory, pruning) with the in-memory and the SQLite checkpointer, and the
raw-LangGraph baseline of the same shape on a saver of the same kind.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from app.config.settings import Settings
from app.knowledge.runtime import TenantMemory
from app.llm.provider import ProviderReply
from app.llm.scripted import Behaviour, ScriptedProvider
from app.runs.runner import Runner
from app.services import Services, open_services
from app.storage.checkpoint import sqlite_saver, thread_size
from evals.bench.baseline import build_baseline
from evals.bench.scenario import TASK, TEAM, bench_settings, rounds_behaviour
from evals.bench.stats import Row, Stat, ratios, timed, within
from graphs.ports import ModelRequest

ROUNDS = (5, 10, 20, 40)
KB = 1024


class Switch:
    """A behaviour that can be swapped between runs on one provider."""

    def __init__(self) -> None:
        self.current: Behaviour | None = None

    def __call__(self, request: ModelRequest) -> ProviderReply | None:
        return self.current(request) if self.current else None


@dataclass
class Samples:
    """Seconds per run, by variant and round count."""

    seconds: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    def add(self, variant: str, rounds: int, seconds: float) -> None:
        self.seconds.setdefault((variant, rounds), []).append(seconds)

    def per_round_ms(self, variant: str, rounds: int) -> list[float]:
        return [s * 1000 / rounds for s in self.seconds[(variant, rounds)]]


def _runner(services: Services, settings: Settings, saver: Any) -> Runner:
    r = services.runner
    return Runner(settings, services.store, saver, r.router, r.gate, r.registry,
                  knowledge=r.knowledge)


async def _foreman(runner: Runner, rounds: int) -> tuple[float, str]:
    seconds, result = await timed(lambda: runner.start(TASK, TEAM))
    if result.status != "success" or result.stop_reason != "satisfied":
        raise RuntimeError(f"{rounds}-round run ended {result.status}/{result.stop_reason}")
    if runner.knowledge is not None:
        # Memory is written behind the run; settle it so it does not bleed into the next
        # measurement (docs/benchmarks.md: figure 1).
        await TenantMemory(runner.knowledge, "default").flush()
    return seconds, result.run_id


async def _baseline(graph: Any, rounds: int) -> float:
    config = {"configurable": {"thread_id": f"b-{uuid.uuid4().hex[:12]}"},
              "recursion_limit": rounds * 4 + 20}
    seconds, out = await timed(lambda: graph.ainvoke({"task": TASK, "rounds": rounds}, config,
                                                     durability="sync"))
    if len(out["results"]) != rounds:
        raise RuntimeError("baseline ran the wrong number of rounds")
    return seconds


async def loop_figures(config: Path | None, workdir: Path, reps: int) -> list[Row]:
    """Run the N-round workloads and return the rows of figures 1, 2 and 5."""
    settings = bench_settings(config, workdir / "loop", max_rounds=max(ROUNDS) + 5)
    agents = [a.name for a in settings.teams[TEAM].agents]
    switch = Switch()
    samples = Samples()
    prompts: dict[int, list[dict[str, Any]]] = {}
    sizes: dict[int, dict[str, Any]] = {}
    async with open_services(settings, scripted=ScriptedProvider(switch)) as services, \
            sqlite_saver(workdir / "loop" / "baseline-checkpoints.db",
                         settings.storage.sqlite_synchronous,
                         compress=False) as base_saver:
        durable = services.runner
        in_memory = _runner(services, settings, InMemorySaver())
        unpruned = _runner(services, replace_settings(settings, prune_checkpoints=False),
                           services.runner.saver)
        graphs = {"sqlite": build_baseline(base_saver, tool_step=True),
                  "memory": build_baseline(InMemorySaver(), tool_step=True),
                  "floor": build_baseline(base_saver)}
        switch.current = rounds_behaviour(3, agents)
        for runner in (durable, in_memory):  # warm-up: templates, schemas, first connections
            await _foreman(runner, 3)
        for graph in graphs.values():
            await _baseline(graph, 3)
        for rounds in ROUNDS:
            switch.current = rounds_behaviour(rounds, agents)
            for _ in range(reps):
                seconds, run_id = await _foreman(durable, rounds)
                samples.add("foreman/sqlite", rounds, seconds)
                samples.add("baseline/sqlite", rounds, await _baseline(graphs["sqlite"], rounds))
                samples.add("foreman/memory", rounds, (await _foreman(in_memory, rounds))[0])
                samples.add("baseline/memory", rounds, await _baseline(graphs["memory"], rounds))
                samples.add("floor/sqlite", rounds, await _baseline(graphs["floor"], rounds))
            prompts[rounds] = [e["data"] for e in services.store.events(run_id)
                               if e["type"] == "model_call"]
            sizes[rounds] = await _sizes(services, unpruned, base_saver, graphs["sqlite"],
                                         rounds)
    return [*_overhead_rows(samples), *_prompt_rows(prompts), *_checkpoint_rows(sizes)]


def replace_settings(settings: Settings, **update: Any) -> Settings:
    """A copy of ``settings`` with ``update`` applied."""
    return settings.model_copy(update=update)


async def _sizes(services: Services, unpruned: Runner, base_saver: Any, base_graph: Any,
                 rounds: int) -> dict[str, Any]:
    """Checkpointer bytes of one run: with every specialist superstep kept, with the default
    settings, and the baseline's."""
    saver = services.runner.saver
    _, run_id = await _foreman(unpruned, rounds)
    run = services.store.get_run(run_id)
    assert run is not None
    written = await thread_size(saver, run.thread_id)
    _, run_id = await _foreman(services.runner, rounds)
    run = services.store.get_run(run_id)
    assert run is not None
    kept = await thread_size(saver, run.thread_id)
    thread = f"b-size-{rounds}"
    await base_graph.ainvoke({"task": TASK, "rounds": rounds},
                             {"configurable": {"thread_id": thread},
                              "recursion_limit": rounds * 4 + 20}, durability="sync")
    base = await thread_size(base_saver, thread)
    assert written and kept and base
    return {"written": written, "kept": kept, "baseline": base}


def _overhead_rows(samples: Samples) -> list[Row]:
    rows = []
    for saver, label in (("memory", "in-memory saver"), ("sqlite", "SQLite, durable")):
        for rounds in ROUNDS:
            ours = samples.per_round_ms(f"foreman/{saver}", rounds)
            base = samples.per_round_ms(f"baseline/{saver}", rounds)
            ratio = ratios(ours, base)
            goal = saver == "sqlite"
            rows.append(Row("1 overhead/round", f"{label}, {rounds} rounds", Stat.of(ours),
                            "ms/round", Stat.of(base), "raw LangGraph, same shape", ratio,
                            "<= 1.5x" if goal else "", within(ratio, 1.5) if goal else None))
    # The baseline's subgraph saves each of its supersteps; a Foreman step saves only its
    # pauses. Against a one-node subgraph (the baseline before 2026-12-07), for scale:
    rounds = max(ROUNDS)
    ours, floor = samples.per_round_ms("foreman/sqlite", rounds), samples.per_round_ms(
        "floor/sqlite", rounds)
    rows.append(Row("1 overhead/round", f"SQLite, durable, {rounds} rounds, against a one-node "
                    "subgraph per step", Stat.of(ours), "ms/round", Stat.of(floor),
                    "raw LangGraph, one-node steps", ratios(ours, floor)))
    return rows


def _prompt_rows(prompts: dict[int, list[dict[str, Any]]]) -> list[Row]:
    longest = max(prompts)
    calls = prompts[longest]
    progress = [c for c in calls if c["role"] == "manager.progress"]
    first, last = progress[0], progress[longest - 1]
    chars = Stat.of([last["prompt_chars"]])
    ratio = Stat.of([last["prompt_chars"] / first["prompt_chars"]])
    token_ratio = Stat.of([last["prompt_tokens"] / first["prompt_tokens"]])
    manager = sum(c["prompt_chars"] for c in calls if c["role"].startswith("manager."))
    specialists = sum(c["prompt_chars"] for c in calls if c["role"].startswith("specialist."))
    short = sum(c["prompt_chars"] for c in prompts[min(prompts)])
    per_round = [c["prompt_chars"] for c in progress]
    return [
        Row("2 prompt growth", f"manager prompt chars, round {longest} vs round 1", chars,
            "chars", Stat.of([first["prompt_chars"]]), "round 1", ratio, "<= 1.3x",
            within(ratio, 1.3), {"progress_prompt_chars_by_round": per_round}),
        Row("2 prompt growth", f"manager prompt tokens, round {longest} vs round 1",
            Stat.of([last["prompt_tokens"]]), "tokens", Stat.of([first["prompt_tokens"]]),
            "round 1", token_ratio, "<= 1.3x", within(token_ratio, 1.3)),
        Row("2 prompt growth", f"total prompt chars, {longest} rounds: manager",
            Stat.of([manager]), "chars", Stat.of([manager + specialists]), "whole run",
            Stat.of([manager / (manager + specialists)])),
        Row("2 prompt growth", f"total prompt chars, {longest} rounds: specialists",
            Stat.of([specialists]), "chars", Stat.of([manager + specialists]), "whole run",
            Stat.of([specialists / (manager + specialists)])),
        # The whole run's progress prompts against ``longest`` copies of the first one:
        # 1.0 when nothing accumulates; resending the thread each round gives ~rounds/2.
        Row("2 prompt growth", f"all {len(per_round)} progress prompts of the {longest}-round "
            "run vs as many copies of the first", Stat.of([sum(per_round)]), "chars",
            Stat.of([len(per_round) * first["prompt_chars"]]), f"{len(per_round)} x round 1",
            Stat.of([sum(per_round) / (len(per_round) * first["prompt_chars"])])),
        Row("2 prompt growth", f"total prompt chars, {longest} vs {min(prompts)} rounds "
            "(the plan has one step per round, so each prompt is longer too)",
            Stat.of([manager + specialists]), "chars", Stat.of([short]),
            f"{min(prompts)} rounds", Stat.of([(manager + specialists) / short])),
    ]


def _checkpoint_rows(sizes: dict[int, dict[str, Any]]) -> list[Row]:
    """Bytes a run stores with the default settings (a specialist's step saves only its
    pauses; none here), then against ``prune_checkpoints: false``, which keeps them all."""
    rows = []
    per_round = {n: s["kept"].bytes / n / KB for n, s in sizes.items()}
    for rounds, s in sizes.items():
        written, kept, base = s["written"], s["kept"], s["baseline"]
        ratio = Stat.of([kept.bytes / base.bytes])
        longest = rounds == max(sizes)
        rows.append(Row("5 checkpoint bytes", f"per run, {rounds} rounds (KB/round)",
                        Stat.of([per_round[rounds]]), "KB/round",
                        Stat.of([base.bytes / rounds / KB]), "raw LangGraph, same shape",
                        ratio, "<= 8 KB/round" if longest else "",
                        per_round[rounds] <= 8 if longest else None,
                        {"bytes": kept.bytes, "checkpoints": kept.checkpoints,
                         "writes": kept.writes, "baseline_bytes": base.bytes,
                         "every_step_bytes": written.bytes,
                         "every_step_checkpoints": written.checkpoints,
                         "every_step_writes": written.writes}))
    lo, hi = min(sizes), max(sizes)
    growth = per_round[hi] / per_round[lo]
    rows.append(Row("5 checkpoint bytes", f"linearity: KB/round at {hi} vs {lo} rounds",
                    Stat.of([per_round[hi]]), "KB/round", Stat.of([per_round[lo]]),
                    f"{lo} rounds", Stat.of([growth]), "linear (<= 1.5x)", growth <= 1.5))
    kept = sizes[hi]["kept"]
    written = sizes[hi]["written"]
    rows.append(Row("5 checkpoint bytes", f"a {hi}-round run, every specialist superstep kept "
                    "(prune_checkpoints: false)", Stat.of([written.bytes / KB]), "KB",
                    Stat.of([kept.bytes / KB]), "default settings",
                    Stat.of([written.bytes / kept.bytes]),
                    detail={"checkpoints": written.checkpoints, "writes": written.writes}))
    return rows
