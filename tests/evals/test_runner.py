"""A fast subset of the suite, one seed, run inline: the real graph, policy and sandbox;
expiry through the approvals sweeper; seeded noise on both tiers; litellm token counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.config.settings import ModelEntry
from app.llm.litellm_provider import load_litellm
from app.llm.provider import ProviderReply
from app.llm.scripted import ScriptedProvider
from app.runs.runner import RunResult
from app.services import Services
from evals import faults, runner
from evals.behaviours import Script
from evals.faults import NOISE_RATES, Noise, NoisyProvider
from evals.runner import EvalClock, run_scenario
from evals.scenario import load_suite
from graphs.ports import ModelRequest, ToolCall

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


async def test_runner_expiry_goes_through_the_approvals_sweeper(tmp_path: Path) -> None:
    (scenario,) = [s for s in load_suite() if s.id == "support-refund-expire"]
    record = await run_scenario(scenario, "routed", 0, tmp_path)

    assert record["passed"], record["problems"]
    assert (record["status"], record["stop_reason"]) == ("error", "blocked")
    assert record["decisions"][0]["decision"] == "expire"
    assert "expired: no decision within" in record["final_answer"]
    assert record["state_diff"] == {}  # no refund, no email


async def test_runner_expiry_answered_by_hand_fails_the_scenario(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old shortcut (a rejection with the message "expired") no longer passes."""
    async def by_hand(s: Services, result: RunResult, clock: EvalClock) -> RunResult:
        [pending] = result.interrupts
        return await s.runner.resume(result.thread_id, {pending.id: {
            "decision": "reject", "message": "expired"}})

    monkeypatch.setattr(runner, "_expire", by_hand)
    (scenario,) = [s for s in load_suite() if s.id == "support-refund-expire"]
    record = await run_scenario(scenario, "routed", 0, tmp_path)

    assert not record["task_success"]
    assert "approval for issue_refund was not expired by the sweeper" in record["problems"]


def test_runner_eval_clock_moves_past_an_expiry_and_never_back() -> None:
    clock = EvalClock()
    start = clock()
    clock.move_past(start + 86_400)
    assert start + 86_401 <= clock() < start + 86_410
    clock.move_past(start)
    assert clock() >= start + 86_401


def _request(role: str, content: str = "do the step", json_output: bool = False
             ) -> ModelRequest:
    return ModelRequest(role=role, messages=[{"role": "user", "content": content}],
                        call_key="k", json_output=json_output)


def test_runner_noise_spares_seed_zero_and_hits_both_tiers() -> None:
    call = ProviderReply(content=None, tool_calls=[ToolCall(
        id="c1", name="issue_refund",
        arguments=json.dumps({"order_id": "O-5002", "amount_usd": 189.0, "reason": "x"}))])
    clean = Noise("s", 0, {"small": 1.0, "large": 1.0})
    assert clean.apply("large", _request("specialist.billing"), call) == call

    loud = Noise("s", 1, {"small": 1.0, "large": 1.0})
    slipped = loud.apply("large", _request("specialist.billing"), call)
    assert json.loads(slipped.tool_calls[0].arguments) == {
        "order_id": "O-5003", "amount_usd": 189.0, "reason": "x"}
    assert loud.injected == [{"kind": "noise_wrong_argument", "role": "specialist.billing",
                              "tier": "large", "call": loud.injected[0]["call"]}]
    ledger = loud.apply("small", _request("manager.progress", json_output=True),
                        ProviderReply(content='{"next_steps": []}'))
    assert ledger.content is not None and not ledger.content.startswith("{")


def test_runner_noise_is_rarer_on_the_large_tier_and_coupled_to_the_small() -> None:
    reply = ProviderReply(content="{}")
    small, large = Noise("s", 1), Noise("s", 1)
    for i in range(3000):
        request = _request("manager.progress", f"round {i}", json_output=True)
        small.apply("small", request, reply)
        large.apply("large", request, reply)
    hit_small = {e["call"] for e in small.injected}
    hit_large = {e["call"] for e in large.injected}

    assert 0 < len(hit_large) < len(hit_small)
    assert hit_large <= hit_small  # the same draw: a large-tier slip is a small-tier one too
    assert abs(len(hit_small) / 3000 - NOISE_RATES["small"]) < 0.01
    assert abs(len(hit_large) / 3000 - NOISE_RATES["large"]) < 0.006


async def test_runner_noise_can_fail_the_large_tier(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "NOISE_RATES", {"small": 0.0, "large": 0.5})
    (scenario,) = [s for s in load_suite() if s.id == "support-refund-approve"]
    records = [await run_scenario(scenario, "all-large", k, tmp_path) for k in (1, 2, 3)]
    slips = [f for r in records for f in r["faults_injected"]]

    assert slips and {f["tier"] for f in slips} == {"large"}
    assert not all(r["task_success"] for r in records)
    assert all(r["noise_slips"] == len(r["faults_injected"]) for r in records)


async def test_runner_usage_is_litellms_token_count_for_the_model() -> None:
    (scenario,) = [s for s in load_suite() if s.id == "support-refund-approve"]
    model = ModelEntry(name="scripted-large", litellm_model="scripted/large", tier="large")
    request = ModelRequest(role="manager.plan", call_key="k", messages=[
        {"role": "system", "content": "You plan."},
        {"role": "user", "content": f"Write the task ledger for: {scenario.task}"}])
    litellm = load_litellm()

    reply = await NoisyProvider(Script(scenario, 0), Noise(scenario.id, 0)).complete(
        model, request)
    plain = await ScriptedProvider().complete(model, request)

    want = litellm.token_counter(model="scripted/large", messages=request.messages)
    assert reply.prompt_tokens == plain.prompt_tokens == want
    assert reply.completion_tokens == litellm.token_counter(model="scripted/large",
                                                            text=reply.content)
    chars = sum(len(str(m["content"])) for m in request.messages)
    assert want != max(1, chars // 4)
