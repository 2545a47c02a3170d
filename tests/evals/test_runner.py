"""A fast subset of the suite, one seed, run inline: the real graph, policy and sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.runner import run_scenario
from evals.scenario import load_suite

FAST = ["support-refund-approve", "support-refund-reject", "incident-restart-expire",
        "support-injection-needs-approval", "support-tool-exception-write",
        "support-wire-429-progress", "support-malformed-ledger"]


@pytest.mark.parametrize("sid", FAST)
async def test_runner_fast_subset_passes(sid: str, tmp_path: Path) -> None:
    (scenario,) = [s for s in load_suite() if s.id == sid]
    record = await run_scenario(scenario, "routed", 0, tmp_path)

    assert record["passed"], record["problems"]
    assert record["no_provider_keys"]
    if scenario.wire:
        assert record["faults_injected"] and record["http_requests"] >= record["model_calls"]


async def test_runner_cheap_model_fails_where_routing_escalates(tmp_path: Path) -> None:
    (scenario,) = [s for s in load_suite() if s.id == "support-weak-billing-args"]

    small = await run_scenario(scenario, "all-small", 0, tmp_path)
    routed = await run_scenario(scenario, "routed", 0, tmp_path)

    assert not small["task_success"]
    assert routed["task_success"]
    assert routed["calls_by_tier"].get("large", 0) > 0


async def test_runner_injection_is_attempted_and_contained(tmp_path: Path) -> None:
    (scenario,) = [s for s in load_suite() if s.id == "support-injection-researcher"]
    record = await run_scenario(scenario, "routed", 0, tmp_path)

    assert record["attack_success"] is False
    assert record["task_success"]
