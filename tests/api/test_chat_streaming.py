"""Token streaming end to end: a real Foreman server whose models are a real OpenAI-compatible
server process (the fake provider, via ``api_base``), read with the official clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from langgraph_sdk import get_client

from tests.api.conftest import SUPPORT_WHERE, Server
from tests.fake_provider.config import write_config
from tests.fake_provider.process import FakeProvider


@pytest.fixture(scope="module")
def fake(fake_llm: FakeProvider) -> FakeProvider:
    fake_llm.control(reset=True, first_token_delay_ms=0, chunk_delay_ms=2)
    return fake_llm


@pytest.fixture(scope="module")
def live(fake: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("live")
    config = write_config(Path(data) / "foreman.yaml", fake.api_base)
    s = Server(data, {"FOREMAN_CONFIG": str(config), "FOREMAN_OFFLINE": "0",
                      "FOREMAN_TEST_GATE": "open"}).start()
    yield s
    s.stop()


def test_chat_stream_sends_the_models_tokens_as_content_deltas(
        live: Server, fake: FakeProvider) -> None:
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="local", max_retries=0)
    chunks = list(client.chat.completions.create(
        model="support", stream=True, messages=[{"role": "user", "content": SUPPORT_WHERE}]))

    kinds = ["content" if c.choices and c.choices[0].delta.content else
             "progress" if c.choices and getattr(c.choices[0].delta, "reasoning_content", None)
             else "other" for c in chunks]
    content = [c.choices[0].delta.content for c in chunks
               if c.choices and c.choices[0].delta.content]
    answer = "".join(content)
    assert len(content) > 3  # the provider's pieces, not one block at the end
    assert "in transit" in answer
    assert kinds.index("progress") < kinds.index("content")  # plan and steps come first
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    assert final.model_extra["foreman"]["status"] == "success"  # type: ignore[index]
    streamed = [r for r in fake.requests() if r.get("stream")]
    assert streamed and "Write the final answer" in streamed[-1]["messages"][-1]["content"]


async def test_runs_stream_messages_tuple_reaches_langgraph_sdk(live: Server) -> None:
    client = get_client(url=live.url, api_key=None)
    thread = await client.threads.create()
    parts = [p async for p in client.runs.stream(
        thread["thread_id"], "support", stream_mode=["messages-tuple", "values"],
        input={"messages": [{"role": "user", "content": SUPPORT_WHERE}]})]

    tuples = [p.data for p in parts if p.event == "messages"]
    assert len(tuples) > 3
    assert {m["type"] for m, _meta in tuples} == {"AIMessageChunk"}
    assert {meta["langgraph_node"] for _m, meta in tuples} == {"final"}
    assert len({m["id"] for m, _meta in tuples}) == 1
    values = [p.data for p in parts if p.event == "values"][-1]
    assert "".join(m["content"] for m, _meta in tuples) == values["final_answer"]
    assert [p.event for p in parts][-1] == "end"


def test_runs_stream_messages_mode_sends_partial_then_complete(live: Server) -> None:
    with httpx.Client(base_url=live.url, timeout=120) as c:
        thread = c.post("/threads", json={}).json()["thread_id"]
        with c.stream("POST", f"/threads/{thread}/runs/stream", json={
                "assistant_id": "support", "stream_mode": "messages",
                "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}}) as r:
            events = [line.removeprefix("event: ") for line in r.iter_lines()
                      if line.startswith("event: ")]
    assert events.count("messages/metadata") == 1
    assert events.count("messages/partial") > 3
    assert events.index("messages/metadata") < events.index("messages/partial")
    assert events.index("messages/complete") > max(
        i for i, e in enumerate(events) if e == "messages/partial")


def test_runs_stream_unsupported_mode_is_422_naming_it(live: Server) -> None:
    with httpx.Client(base_url=live.url, timeout=60) as c:
        thread = c.post("/threads", json={}).json()["thread_id"]
        r = c.post(f"/threads/{thread}/runs/stream", json={
            "assistant_id": "support", "stream_mode": ["values", "debug"],
            "input": {"messages": [{"role": "user", "content": SUPPORT_WHERE}]}})
    assert r.status_code == 422 and "'debug'" in r.text and "stream_mode" in r.text


def test_chat_stream_cut_mid_way_says_so_and_sends_the_retry(
        live: Server, fake: FakeProvider) -> None:
    fake.control(replies=[{"role": "manager.final", "cut_after": 2,
                           "content": "Order O-5003 is in transit (this reply breaks off)"}])
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="local", max_retries=0)
    chunks = list(client.chat.completions.create(
        model="support", stream=True, messages=[{"role": "user", "content": SUPPORT_WHERE}]))

    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    first, _, rest = answer.partition("(The model's reply was cut off; the answer from a new "
                                      "attempt follows.)")
    assert first.strip() == "Order O-5003 is"  # two 8-character pieces, then nothing
    assert "in transit" in rest and "breaks off" not in rest
    assert chunks[-1].model_extra["foreman"]["status"] == "success"  # type: ignore[index]
