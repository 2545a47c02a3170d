"""litellm against a real OpenAI-compatible server process (the fake provider), over a socket:
streaming, tool calls, structured output, and the bad replies a live model can send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config.settings import ModelEntry, RoutingConfig
from app.llm.journal import Journal
from app.llm.litellm_provider import LiteLLMProvider
from app.llm.provider import ProviderFault
from app.llm.router import Router, RunRouter
from app.llm.scripted import ScriptedProvider
from app.llm.stream import TokenDelta, token_receiver
from app.storage.db import SqliteDatabase
from app.storage.store import Store
from graphs.errors import ModelCallError
from graphs.ports import ModelRequest
from tests.conftest import make_settings
from tests.fake_provider.process import FakeProvider
from tests.fakes import EventLog

TOOL = {"type": "function", "function": {
    "name": "lookup_order", "description": "Look up an order.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                   "required": ["order_id"]}}}
FINAL = [{"role": "user", "content": "Tell the requester, briefly, what was done."}]


@pytest.fixture
def fake(fake_llm: FakeProvider) -> FakeProvider:
    fake_llm.control(reset=True, first_token_delay_ms=0, chunk_delay_ms=0)
    return fake_llm


def entry(fake: FakeProvider, name: str = "local", tier: str = "small",
          **extra: Any) -> ModelEntry:
    """A model configured as a user configures llama.cpp: an ``openai/`` id and ``api_base``."""
    return ModelEntry(name=name, litellm_model="openai/fake-model", tier=tier,  # type: ignore[arg-type]
                      api_base=fake.api_base, input_cost_per_mtok=1.0, output_cost_per_mtok=2.0,
                      max_tokens=200, **extra)


def run_router(fake: FakeProvider, tmp_path: Path,
               store: list[Store]) -> tuple[RunRouter, EventLog]:
    models = [entry(fake, "local-small"), entry(fake, "local-large", "large")]
    roles = {r: "local-small" for r in ("manager.plan", "manager.progress", "manager.verify",
                                        "manager.final", "specialist")}
    settings = make_settings(tmp_path, offline=False, models=models, routing=RoutingConfig(
        roles=roles, fallbacks={"max_retries": 1, "backoff_base_s": 0.001, "jitter": 0.0}))
    db = Store(SqliteDatabase(tmp_path / "foreman.db"))
    store.append(db)
    router = Router(settings, {"litellm": LiteLLMProvider(), "scripted": ScriptedProvider()},
                    offline=False, store=db)
    db.create_run("r-1", "t-1", "support", "task")
    events = EventLog()
    return router.for_run(Journal(db, "r-1", "t-1", "default"), events), events


@pytest.fixture
def stores() -> Iterator[list[Store]]:
    opened: list[Store] = []
    yield opened
    for s in opened:
        s.close()


async def test_litellm_provider_streams_content_deltas_over_a_socket(fake: FakeProvider) -> None:
    fake.control(replies=[{"content": "Order O-5003 is in transit with DHL, due Friday."}])
    deltas: list[str] = []
    reply = await LiteLLMProvider().stream(
        entry(fake), ModelRequest(role="manager.final", messages=FINAL, call_key="k"),
        deltas.append)

    assert len(deltas) > 3  # the fake sends 8 characters a chunk
    assert "".join(deltas) == reply.content == "Order O-5003 is in transit with DHL, due Friday."
    assert reply.completion_tokens > 0 and reply.prompt_tokens > 0
    sent = fake.requests()[-1]
    assert sent["stream"] is True and sent["model"] == "fake-model"


async def test_litellm_provider_tool_call_round_trip_streamed_and_plain(
        fake: FakeProvider) -> None:
    request = ModelRequest(role="specialist.researcher", call_key="k", tools=[TOOL], messages=[
        {"role": "user", "content": "Where is order O-5003?"}])
    plain = await LiteLLMProvider().complete(entry(fake), request)
    streamed = await LiteLLMProvider().stream(entry(fake), request, lambda text: None)

    for reply in (plain, streamed):
        [call] = reply.tool_calls
        assert call.name == "lookup_order" and json.loads(call.arguments) == {"order_id": "ping"}
        assert call.id
    assert fake.requests()[0]["tools"][0]["function"]["name"] == "lookup_order"


async def test_litellm_provider_sends_json_schema_only_where_the_model_takes_it(
        fake: FakeProvider) -> None:
    schema = {"title": "Answer", "type": "object", "properties": {"answer": {"type": "integer"}},
              "required": ["answer"]}
    request = ModelRequest(role="manager.verify", call_key="k", json_output=True,
                           json_schema=schema, messages=[{"role": "user", "content": "2+3?"}])
    with_schema = await LiteLLMProvider().complete(entry(fake, supports_json_schema=True), request)
    json_mode = await LiteLLMProvider().complete(entry(fake), request)

    first, second = fake.requests()
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["schema"] == schema
    assert json.loads(with_schema.content or "") == {"answer": 5}
    assert second["response_format"] == {"type": "json_object"}
    assert json.loads(json_mode.content or "") == {"answer": "ok"}


async def test_litellm_provider_stream_cut_mid_way_is_a_truncated_fault(
        fake: FakeProvider) -> None:
    fake.control(replies=[{"content": "This answer will never be finished, sorry.",
                           "cut_after": 2}])
    deltas: list[str] = []
    with pytest.raises(ProviderFault) as caught:
        await LiteLLMProvider().stream(
            entry(fake), ModelRequest(role="manager.final", messages=FINAL, call_key="k"),
            deltas.append)
    assert caught.value.kind == "truncated" and caught.value.retryable
    assert "".join(deltas) == "This answer will "[:16]


@pytest.mark.parametrize(("reply", "kind"), [
    ({"content": ""}, "empty_reply"),
    ({"content": " \n\t "}, "empty_reply"),
    ({"content": "spam " * 400}, "runaway"),  # 10x the 200 tokens it may use
])
async def test_router_escalates_a_bad_reply_to_the_next_tier(
        fake: FakeProvider, tmp_path: Path, stores: list[Store], reply: dict[str, Any],
        kind: str) -> None:
    run, events = run_router(fake, tmp_path, stores)
    fake.control(replies=[reply])
    response = await run.complete(ModelRequest(role="manager.final", messages=FINAL,
                                               call_key="c1"))

    assert response.model == "local-large"  # the small model's bad reply was refused
    assert response.content == "ok: the fake provider answered in a few words."
    outcomes = [(c["model"], c["outcome"]) for c in events.of("model_call")]
    assert outcomes == [("local-small", kind), ("local-large", "ok")]
    assert "escalated small→large after bad output" in events.of("model_call")[1]["route_reason"]
    ledger = run.router.store.ledger("r-1")
    assert ledger[0]["completion_tokens"] > 0  # the refused reply is still paid for


async def test_router_reports_bad_output_from_every_tier_as_a_typed_failure(
        fake: FakeProvider, tmp_path: Path, stores: list[Store]) -> None:
    run, events = run_router(fake, tmp_path, stores)
    fake.control(replies=[{"content": ""}, {"content": "   "}])
    with pytest.raises(ModelCallError, match="empty reply"):
        await run.complete(ModelRequest(role="manager.final", messages=FINAL, call_key="c1"))
    assert [c["outcome"] for c in events.of("model_call")] == ["empty_reply", "empty_reply"]


async def test_router_streams_a_retry_after_a_cut_stream_as_a_new_attempt(
        fake: FakeProvider, tmp_path: Path, stores: list[Store]) -> None:
    run, events = run_router(fake, tmp_path, stores)
    fake.control(replies=[{"content": "First try that breaks off.", "cut_after": 1},
                          {"content": "Second try, whole."}])
    got: list[TokenDelta] = []
    token_receiver.set(got.append)
    try:
        response = await run.complete(ModelRequest(role="manager.final", messages=FINAL,
                                                   call_key="final"))
    finally:
        token_receiver.set(None)

    assert response.content == "Second try, whole."
    assert "".join(d.text for d in got if d.attempt == 0) == "First tr"
    assert "".join(d.text for d in got if d.attempt == 1) == "Second try, whole."
    assert {d.role for d in got} == {"manager.final"} and {d.run_id for d in got} == {"r-1"}
    assert [c["outcome"] for c in events.of("model_call")] == ["truncated", "ok"]
