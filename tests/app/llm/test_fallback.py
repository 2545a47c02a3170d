"""Provider faults through the real litellm path: retries, next deployment, circuit breaker."""

from __future__ import annotations

import random
from collections.abc import Callable

import httpx
import pytest
import respx

from app.config.settings import FallbackConfig
from app.llm.fallback import CircuitBreaker, backoff_s
from graphs.errors import ModelCallError
from graphs.ports import ModelRequest
from tests.app.llm.conftest import HOSTS, Harness
from tests.fakes import FakeClock, chat_body

URL = {name: f"{base}/chat/completions" for name, base in HOSTS.items()}


def progress_call(key: str = "r1/progress/a0") -> ModelRequest:
    return ModelRequest(
        role="manager.progress",
        call_key=key,
        messages=[{"role": "user", "content": "How is it going?"}],
        signals={"round": 1},
    )


def outcomes(h: Harness) -> list[tuple[str, str, str]]:
    return [(r["call_key"], r["model"], r["outcome"]) for r in h.ledger()]


async def test_fallback_429_with_retry_after_then_success(
    mock_llm: respx.MockRouter, harness: Callable[..., Harness]
) -> None:
    h = harness()
    route = mock_llm.post(URL["small-a"])
    route.side_effect = [
        httpx.Response(
            429,
            headers={"retry-after": "0.02"},
            json={"error": {"message": "slow down", "type": "rate_limit"}},
        ),
        httpx.Response(200, json=chat_body("fine")),
    ]

    response = await h.run.complete(progress_call())

    assert response.content == "fine"
    assert route.call_count == 2
    assert outcomes(h) == [
        ("r1/progress/a0#1", "small-a", "rate_limited"),
        ("r1/progress/a0", "small-a", "ok"),
    ]
    failed = h.events.of("model_call")[0]
    assert failed["retry_in_s"] == 0.02  # the server's Retry-After, not our own backoff
    assert "retried after rate_limited" in h.ledger()[-1]["route_reason"]


async def test_fallback_500_moves_to_next_deployment_of_the_tier(
    mock_llm: respx.MockRouter, harness: Callable[..., Harness]
) -> None:
    h = harness()
    broken = mock_llm.post(URL["small-a"]).mock(
        return_value=httpx.Response(500, json={"error": {"message": "boom"}})
    )
    backup = mock_llm.post(URL["small-b"]).mock(
        return_value=httpx.Response(200, json=chat_body("from b"))
    )

    response = await h.run.complete(progress_call())

    assert response.content == "from b"
    assert response.model == "small-b"
    assert broken.call_count == 2  # one retry (max_retries=1), then it is left alone
    assert backup.call_count == 1
    assert outcomes(h) == [
        ("r1/progress/a0#1", "small-a", "server_error"),
        ("r1/progress/a0#2", "small-a", "server_error"),
        ("r1/progress/a0", "small-b", "ok"),
    ]
    ok = h.ledger()[-1]
    assert ok["tier"] == "small"
    assert "fallback after small-a server_error" in ok["route_reason"]


async def test_fallback_timeout_is_retried(
    mock_llm: respx.MockRouter, harness: Callable[..., Harness]
) -> None:
    h = harness()
    route = mock_llm.post(URL["small-a"])
    route.side_effect = [
        httpx.ReadTimeout("no answer"),
        httpx.Response(200, json=chat_body("late but fine")),
    ]

    response = await h.run.complete(progress_call())

    assert response.content == "late but fine"
    assert outcomes(h) == [
        ("r1/progress/a0#1", "small-a", "timeout"),
        ("r1/progress/a0", "small-a", "ok"),
    ]


async def test_fallback_each_model_tried_once_then_the_call_fails(
    mock_llm: respx.MockRouter, harness: Callable[..., Harness]
) -> None:
    h = harness(fallbacks={"max_retries": 0})
    a = mock_llm.post(URL["small-a"]).mock(return_value=httpx.Response(503, json={}))
    b = mock_llm.post(URL["small-b"]).mock(return_value=httpx.Response(503, json={}))

    with pytest.raises(ModelCallError, match="no deployment answered"):
        await h.run.complete(progress_call())

    assert (a.call_count, b.call_count) == (1, 1)
    assert [r["outcome"] for r in h.ledger()] == ["server_error", "server_error"]
    assert h.store.totals("r-test").calls == 0


async def test_fallback_circuit_opens_after_k_failures_and_closes_after_good_probe(
    mock_llm: respx.MockRouter, harness: Callable[..., Harness]
) -> None:
    h = harness(
        fallbacks={
            "max_retries": 0,
            "circuit_failures": 2,
            "circuit_window_s": 60,
            "circuit_cooldown_s": 30,
        }
    )
    a = mock_llm.post(URL["small-a"])
    a.side_effect = [
        httpx.Response(500, json={}),
        httpx.Response(500, json={}),
        httpx.Response(200, json=chat_body("a is back")),
    ]
    mock_llm.post(URL["small-b"]).mock(return_value=httpx.Response(200, json=chat_body("b")))

    await h.run.complete(progress_call("r1/progress/a0"))
    await h.run.complete(progress_call("r2/progress/a0"))
    assert h.router.breaker.state("small-a") == "open"

    third = await h.run.complete(progress_call("r3/progress/a0"))
    assert third.model == "small-b"
    assert a.call_count == 2  # skipped while open: no request reached it
    assert ("r3/progress/a0#1", "small-a", "circuit_open") in outcomes(h)

    h.clock.advance(31)
    assert h.router.breaker.state("small-a") == "half_open"
    fourth = await h.run.complete(progress_call("r4/progress/a0"))
    assert fourth.model == "small-a"
    assert fourth.content == "a is back"
    assert h.router.breaker.state("small-a") == "closed"


def test_fallback_failed_probe_reopens_the_circuit() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, window_s=60, cooldown_s=10, clock=clock)
    breaker.failure("m")
    clock.advance(11)
    assert breaker.allow("m")  # the probe
    assert not breaker.allow("m")  # only one probe at a time
    breaker.failure("m")
    assert breaker.state("m") == "open"


def test_fallback_backoff_is_exponential_with_bounded_jitter() -> None:
    config = FallbackConfig(
        backoff_base_s=0.5, backoff_max_s=3.0, jitter=0.2, retry_after_max_s=5.0
    )
    rng = random.Random(7)
    waits = [backoff_s(n, config, None, rng) for n in range(5)]
    for n, wait in enumerate(waits):
        base = min(3.0, 0.5 * 2**n)
        assert base * 0.8 <= wait <= base * 1.2
    assert backoff_s(0, config, 2.0, rng) >= 2.0  # Retry-After is a floor
    assert backoff_s(0, config, 100.0, rng) <= 5.0 * 1.2  # ... capped by config
