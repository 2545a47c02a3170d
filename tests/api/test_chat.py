"""The official ``openai`` SDK against a real server: sync, async, stream, thread continuation."""

from __future__ import annotations

import openai
import pytest

from tests.api.conftest import SUPPORT_REFUND, SUPPORT_WHERE, Server


def test_chat_sync_completes_demo_and_continues_thread(server: Server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)

    raw = client.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": SUPPORT_WHERE}])
    first = raw.parse()
    thread_id = raw.headers["x-foreman-thread-id"]

    assert "in transit" in (first.choices[0].message.content or "")
    assert first.usage is not None and first.usage.total_tokens > 0
    extra = first.model_extra["foreman"]  # type: ignore[index]
    assert extra["status"] == "success" and extra["thread_id"] == thread_id
    assert extra["cost_usd"] > 0

    follow = client.chat.completions.create(
        model="support", messages=[{"role": "user", "content": "Thanks! Anything else?"}],
        extra_headers={"X-Foreman-Thread-Id": thread_id})
    assert follow.model_extra["foreman"]["thread_id"] == thread_id  # type: ignore[index]
    assert follow.model_extra["foreman"]["run_id"] != extra["run_id"]  # type: ignore[index]


async def test_chat_async_continues_thread_by_metadata(server: Server) -> None:
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)

    first = await client.chat.completions.create(
        model="incident",
        messages=[{"role": "user",
                   "content": "payments-worker latency is above SLO; scale it out"}])
    thread_id = first.model_extra["foreman"]["thread_id"]  # type: ignore[index]
    second = await client.chat.completions.create(
        model="support", metadata={"thread_id": thread_id},
        messages=[{"role": "user", "content": "And how is it now?"}])

    assert "4 replicas" in (first.choices[0].message.content or "")
    assert second.model_extra["foreman"]["thread_id"] == thread_id  # type: ignore[index]


def test_chat_stream_sends_progress_then_answer_and_usage(server: Server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)

    stream = client.chat.completions.create(
        model="incident", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "checkout-api is returning 500 errors; "
                                              "investigate and fix it"}])
    chunks = list(stream)

    progress = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                       for c in chunks if c.choices)
    pieces = [c.choices[0].delta.content for c in chunks
              if c.choices and c.choices[0].delta.content]
    answer = "".join(pieces)
    assert "Plan:" in progress
    assert "restarted" in answer
    assert len(pieces) > 3  # the scripted model streams its answer a few words at a time
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert finals[0].model_extra["foreman"]["status"] == "success"  # type: ignore[index]


def test_chat_interrupted_run_names_the_pending_approval(server: Server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)

    reply = client.chat.completions.create(
        model="support", messages=[{"role": "user", "content": SUPPORT_REFUND}])

    foreman = reply.model_extra["foreman"]  # type: ignore[index]
    text = reply.choices[0].message.content or ""
    assert foreman["status"] == "interrupted" and len(foreman["approvals"]) == 1
    assert "issue_refund" in text and "billing-leads" in text
    assert foreman["approvals"][0] in text


def test_chat_errors_are_openai_shaped(server: Server) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0)

    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError) as invalid:
        client.chat.completions.create(model="support", messages=[])

    assert missing.value.body["code"] == "not_found"  # type: ignore[index]
    assert invalid.value.body["param"] == "body.messages"  # type: ignore[index]
    assert [m.id for m in client.models.list()] == ["support", "incident"]
