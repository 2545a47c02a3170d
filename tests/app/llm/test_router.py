"""The router end to end: ledger costs, escalation, policies per role, cache, offline runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from app.llm.litellm_provider import load_litellm
from app.llm.provider import ProviderReply
from app.llm.scripted import ScriptedProvider
from app.services import open_services
from graphs.ledger import VerdictOut
from graphs.ports import ModelRequest, ToolCall
from graphs.structured import ask_structured
from tests.app.llm.conftest import HOSTS, Harness
from tests.conftest import make_settings
from tests.fakes import cached_chat_body, chat_body

URL = {name: f"{base}/chat/completions" for name, base in HOSTS.items()}
DEMO = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
ROLES = [
    "manager.plan",
    "manager.progress",
    "manager.verify",
    "manager.final",
    "specialist.billing",
]


def request(role: str, **signals: Any) -> ModelRequest:
    return ModelRequest(
        role=role,
        call_key=f"{role}/k",
        messages=[{"role": "user", "content": "Do the thing."}],
        signals=signals,
    )


async def test_router_ledger_cost_equals_litellm_completion_cost(
    mock_llm: respx.MockRouter, harness: Callable[..., Harness]
) -> None:
    h = harness()
    body = cached_chat_body("ok", prompt_tokens=1234, completion_tokens=567, cached_tokens=200)
    mock_llm.post(URL["small-a"]).mock(return_value=httpx.Response(200, json=body))

    response = await h.run.complete(request("manager.progress"))

    litellm = load_litellm()
    expected = litellm.completion_cost(completion_response=litellm.ModelResponse(**body))
    row = h.ledger()[0]
    assert row["cost_usd"] == pytest.approx(expected, rel=0.01)
    assert response.usage.cost_usd == row["cost_usd"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (
        1234,
        567,
        200,
    )
    event = h.events.of("model_call")[0]
    assert event["cost_usd"] == row["cost_usd"]
    assert event["tier"] == "small"
    assert event["route_reason"].startswith("routed: start small")


async def test_router_escalates_invalid_structured_output_to_next_tier(
    mock_llm: respx.MockRouter, harness: Callable[..., Harness]
) -> None:
    h = harness()
    mock_llm.post(URL["small-a"]).mock(
        return_value=httpx.Response(200, json=chat_body("I think it is all done!"))
    )
    verdict = {"verified": True, "reason": "every step reported done", "missing": []}
    mock_llm.post(URL["large"]).mock(
        return_value=httpx.Response(200, json=chat_body(json.dumps(verdict), model="gpt-4o"))
    )

    parsed, notes = await ask_structured(
        h.run,
        role="manager.verify",
        messages=[{"role": "user", "content": "Verify."}],
        schema=VerdictOut,
        call_key="r3/verify",
        signals={"round": 3},
    )

    assert parsed is not None and parsed.verified
    assert "repaired on retry" in notes[0]
    rows = h.ledger()
    assert [(r["call_key"], r["model"], r["tier"]) for r in rows] == [
        ("r3/verify/a0", "small-a", "small"),
        ("r3/verify/a1", "large", "large"),
    ]
    assert "escalation 1 after schema_invalid" in rows[1]["route_reason"]


async def test_router_escalation_is_capped_per_step_and_returns_to_start_tier(
    harness: Callable[..., Harness],
) -> None:
    h = harness(escalation={"max_per_step": 1})
    budget = h.run.budget

    bad_args = h.router.route(
        request("specialist.billing", failure="tool_args_invalid", arg_errors=3, agent="billing"),
        budget,
    )
    after = h.router.route(request("specialist.billing", arg_errors=3, agent="billing"), budget)

    assert bad_args.tier == "large"
    assert "escalation 1 after tool_args_invalid" in bad_args.reason
    assert after.tier == "small"
    assert (
        h.router.route(request("manager.progress", failure="stall", stalls=2), budget).tier
        == "large"
    )
    none = harness(escalation={"max_per_step": 0}).router
    assert (
        none.route(request("manager.progress", failure="stall", stalls=2), budget).tier == "small"
    )


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("all-small", ["small-a", "small-a", "small-a", "small-a", "small-a"]),
        ("all-large", ["large", "large", "large", "large", "large"]),
        ("routed", ["large", "small-a", "small-a", "large", "small-a"]),
    ],
)
def test_router_policy_picks_models_per_role(
    harness: Callable[..., Harness], policy: str, expected: list[str]
) -> None:
    h = harness(policy=policy)

    chosen = [h.router.route(request(role), h.run.budget).models[0].name for role in ROLES]

    assert chosen == expected


def test_router_routed_lifts_a_difficult_step(harness: Callable[..., Harness]) -> None:
    h = harness()
    hard = ModelRequest(
        role="specialist.billing",
        call_key="k",
        messages=[{"role": "user", "content": "x" * 20_000}],
        signals={"agent": "billing", "tools": 8, "prior_failures": 2, "replans": 1},
    )

    route = h.router.route(hard, h.run.budget)

    assert route.tier == "large"
    assert "lifted to large" in route.reason


async def test_router_cache_replays_an_identical_call_for_free(
    mock_llm: respx.MockRouter, harness: Callable[..., Harness]
) -> None:
    h = harness(cache=True)
    route = mock_llm.post(URL["small-a"]).mock(
        return_value=httpx.Response(200, json=chat_body("same answer"))
    )
    other = h.new_run("r-other")

    first = await h.run.complete(request("manager.progress"))
    # The request itself is identical; the run-unique key sent to providers is not hashed.
    second = await other.complete(request("manager.progress"))

    assert first.content == second.content == "same answer"
    assert route.call_count == 1
    assert h.store.ledger("r-other")[0]["outcome"] == "cached"
    assert second.usage.cost_usd == 0.0


async def offline_ledger(tmp_path: Path, **overrides: Any) -> tuple[Any, list[dict[str, Any]]]:
    settings = make_settings(tmp_path / "data", **overrides)
    async with open_services(settings) as services:
        result = await services.runner.start(DEMO, "support")
        return result, services.store.ledger(result.run_id)


@pytest.mark.parametrize(
    ("policy", "models"),
    [
        (
            "all-small",
            {
                "manager.plan": {"scripted-small"},
                "manager.final": {"scripted-small"},
                "manager.progress": {"scripted-small"},
                "specialist.billing": {"scripted-small"},
            },
        ),
        (
            "all-large",
            {
                "manager.plan": {"scripted-large"},
                "manager.final": {"scripted-large"},
                "manager.progress": {"scripted-large"},
                "specialist.billing": {"scripted-large"},
            },
        ),
        (
            "routed",
            {
                "manager.plan": {"scripted-large"},
                "manager.final": {"scripted-large"},
                "manager.progress": {"scripted-small"},
                "specialist.billing": {"scripted-small"},
            },
        ),
    ],
)
async def test_router_offline_run_follows_policy(
    tmp_path: Path, policy: str, models: dict[str, set[str]]
) -> None:
    base = make_settings(tmp_path / "cfg")
    result, ledger = await offline_ledger(tmp_path, routing=base.with_policy(policy).routing)  # type: ignore[arg-type]

    assert result.stop_reason == "satisfied"
    for role, expected in models.items():
        assert {r["model"] for r in ledger if r["role"] == role} == expected, role
    assert result.cost_usd == pytest.approx(sum(r["cost_usd"] for r in ledger))


async def test_router_offline_weak_small_model_escalates_and_run_succeeds(tmp_path: Path) -> None:
    result, ledger = await offline_ledger(tmp_path, scripted_weak_roles=["manager.progress"])

    assert result.stop_reason == "satisfied"
    first_round = {r["call_key"]: r for r in ledger if r["call_key"].startswith("r1/progress")}
    assert first_round["r1/progress/a0"]["tier"] == "small"
    assert first_round["r1/progress/a1"]["tier"] == "large"
    assert "after schema_invalid" in first_round["r1/progress/a1"]["route_reason"]
    # The next step starts on the starting tier again.
    assert {r["tier"] for r in ledger if r["call_key"] == "r2/progress/a0"} == {"small"}


async def test_router_malformed_tool_call_escalates_the_specialists_next_call(
    tmp_path: Path,
) -> None:
    def clumsy(request: ModelRequest) -> ProviderReply | None:
        if request.call_key.endswith("/S1/researcher/s0"):
            return ProviderReply(
                content=None,
                tool_calls=[ToolCall(id="call_bad", name="lookup_customer", arguments="{}")],
            )
        return None

    settings = make_settings(tmp_path / "data")
    async with open_services(settings, scripted=ScriptedProvider(behaviour=clumsy)) as services:
        result = await services.runner.start(DEMO, "support")
        ledger = {r["call_key"]: r for r in services.store.ledger(result.run_id)}

    assert ledger["r1/0/S1/researcher/s0"]["tier"] == "small"
    retry = ledger["r1/0/S1/researcher/s1"]
    assert retry["tier"] == "large"
    assert "escalation 1 after tool_args_invalid" in retry["route_reason"]
    # The step is redone next round, from its starting tier again.
    assert ledger["r2/0/S1/researcher/s0"]["tier"] == "small"
