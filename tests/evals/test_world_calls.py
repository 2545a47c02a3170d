"""Scenarios that check the world through the project's own read tools: the ``foreman init
--template blank`` project's scenario, on its real stdio MCP server, passes; a run that left
the world wrong fails it; a world call may not write."""

from __future__ import annotations

from pathlib import Path

from app.config.settings import load_settings
from app.project.init import init_project
from evals.runner import run_scenario
from evals.scenario import Scenario, load_suite
from evals.world_calls import WorldCall


def project(tmp_path: Path) -> tuple[Path, Scenario]:
    folder = tmp_path / "desk"
    init_project(folder, "blank")
    (scenario,) = load_suite(folder / "scenarios")
    return folder / "foreman.yaml", scenario


async def test_blank_project_scenario_checks_its_mcp_world_and_passes(tmp_path: Path) -> None:
    config, scenario = project(tmp_path)
    assert [c.tool for c in scenario.expect.world_calls] == ["helpdesk.list_notes"] * 2

    record = await run_scenario(scenario, "routed", 0, tmp_path / "work",
                                base=load_settings(config))

    assert record["passed"], record["problems"]
    assert [t["tool"] for t in record["trajectory"]] == ["helpdesk.get_customer",
                                                         "helpdesk.add_note"]


async def test_a_wrong_world_fails_the_scenario(tmp_path: Path) -> None:
    config, scenario = project(tmp_path)
    book = scenario.book()
    assert book is not None
    # The same task, but the agent writes the note on the wrong customer.
    step = book.steps[0]
    wrong_calls = [c.model_copy(update={"args": {**c.args, "customer_id": "CU-2"}})
                   for c in step.calls]
    wrong = scenario.model_copy(update={"playbook": book.model_copy(update={"steps": [
        step.model_copy(update={"calls": wrong_calls})]})})

    record = await run_scenario(wrong, "routed", 0, tmp_path / "work",
                                base=load_settings(config))

    assert not record["passed"] and not record["task_success"]
    world = [p for p in record["problems"] if p.startswith("world call")]
    assert len(world) == 2, record["problems"]
    assert '{"customer_id": "CU-1"}: result differs at notes[0]' in world[0]
    assert '{"customer_id": "CU-2"}: answer mentions' in world[1]
    # Everything else about the run was fine: only the world calls could see it.
    assert [p for p in record["problems"] if not p.startswith("world call")] == []


async def test_a_world_call_may_only_read(tmp_path: Path) -> None:
    config, scenario = project(tmp_path)
    writes = scenario.model_copy(update={"expect": scenario.expect.model_copy(update={
        "world_calls": [WorldCall(tool="helpdesk.add_note",
                                  args={"customer_id": "CU-2", "text": "from the judge"}),
                        WorldCall(tool="helpdesk.list_notes", args={"customer_id": "CU-2"},
                                  lacks=["from the judge"]),
                        WorldCall(tool="crm.nothing")]})})

    record = await run_scenario(writes, "routed", 0, tmp_path / "work",
                                base=load_settings(config))

    assert record["problems"] == [
        'world call helpdesk.add_note {"customer_id": "CU-2", "text": "from the judge"}: '
        "helpdesk.add_note is a write tool; world checks only read",
        'world call crm.nothing {}: no such tool in this project']
    assert not record["passed"]
