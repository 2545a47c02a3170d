"""Figure 0's script on Foreman's side (no autogen needed): R rounds alternating between the
two agents of the two-step plan, then satisfied; the Magentic-One side runs in the bench."""

from __future__ import annotations

from pathlib import Path

from app.llm.scripted import ScriptedProvider
from app.services import open_services
from evals.bench.magentic import AGENTS, _foreman_run, _two_agent_settings, foreman_behaviour
from evals.bench.scenario import bench_settings
from tests.conftest import ROOT


async def test_bench_magentic_script_runs_r_rounds_alternating_two_agents(
        tmp_path: Path) -> None:
    settings = _two_agent_settings(bench_settings(ROOT / "foreman.yaml", tmp_path,
                                                  max_rounds=10))
    assert [a.name for a in settings.teams["support"].agents] == list(AGENTS)
    async with open_services(settings,
                             scripted=ScriptedProvider(foreman_behaviour(5))) as services:
        seconds, chars = await _foreman_run(services.runner, services, 5)
        [run] = services.store.db.query("SELECT id FROM runs")
        calls = [e["data"] for e in services.store.events(run["id"])
                 if e["type"] == "model_call"]
    agents = [c["agent"] for c in calls if c["role"].startswith("specialist.")][::2]
    assert agents == ["researcher", "billing", "researcher", "billing", "researcher"]
    assert sum(1 for c in calls if c["role"] == "manager.progress") == 6
    assert seconds > 0 and chars == sum(c["prompt_chars"] for c in calls) > 0
