"""Whole runs on a live-style model (the fake provider over a socket) that misbehaves: every
run still ends with an honest answer, and each bad reply is a typed failure on record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.config.settings import Settings, load_settings
from app.services import open_services
from tests.fake_provider.config import write_config
from tests.fake_provider.process import FakeProvider

WHERE = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"


@pytest.fixture
def fake(fake_llm: FakeProvider) -> FakeProvider:
    fake_llm.control(reset=True, first_token_delay_ms=0, chunk_delay_ms=0)
    return fake_llm


@pytest.fixture
def live(fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("FOREMAN_OFFLINE", raising=False)
    settings = load_settings(write_config(tmp_path / "foreman.yaml", fake.api_base))
    return settings.model_copy(update={"data_dir": tmp_path / "data"})


async def _run(settings: Settings) -> tuple[Any, list[dict[str, Any]]]:
    async with open_services(settings) as s:
        result = await s.runner.start(WHERE, "support")
        return result, s.store.events(result.run_id)


@pytest.mark.parametrize(("call", "error"), [
    ({"name": "drop_tables", "arguments": "{}"}, "not available to researcher"),
    ({"name": "lookup_order", "arguments": "order O-5003, please"}, "invalid arguments"),
])
async def test_run_survives_a_bad_tool_call_and_escalates_the_next_step(
        live: Settings, fake: FakeProvider, call: dict[str, str], error: str) -> None:
    fake.control(replies=[{"role": "specialist", "tool_calls": [call]}])
    result, events = await _run(live)

    assert result.status == "success" and "in transit" in (result.final_answer or "")
    refused = [e["data"] for e in events if e["type"] == "tool_result" and not e["data"]["ok"]]
    assert refused[0]["executed"] is False and error in refused[0]["error"]
    calls = [e["data"] for e in events if e["type"] == "model_call"
             and str(e["data"]["role"]).startswith("specialist")]
    # The call after the refusal is marked tool_args_invalid and climbs a tier.
    assert calls[0]["model"] == "local-small" and calls[1]["model"] == "local-large"
    assert "tool_args_invalid" in calls[1]["route_reason"]


async def test_run_with_a_silent_final_model_still_answers_honestly(
        live: Settings, fake: FakeProvider) -> None:
    fake.control(replies=[{"role": "manager.final", "content": ""},
                          {"role": "manager.final", "content": "  \n "}])
    result, events = await _run(live)

    finals = [e["data"] for e in events if e["type"] == "model_call"
              and e["data"]["role"] == "manager.final"]
    assert [(c["model"], c["outcome"]) for c in finals] == [
        ("local-small", "empty_reply"), ("local-large", "empty_reply")]
    assert result.status == "success"
    answer = result.final_answer or ""
    assert answer.strip() and "O-5003" in answer  # written by Foreman from the step results


async def test_run_with_a_runaway_model_is_escalated_and_costed(
        live: Settings, fake: FakeProvider) -> None:
    fake.control(replies=[{"role": "manager.final", "content": "blah " * 2000}])
    result, events = await _run(live)

    finals = [e["data"] for e in events if e["type"] == "model_call"
              and e["data"]["role"] == "manager.final"]
    assert [c["outcome"] for c in finals] == ["runaway", "ok"]
    # More than twice the max_tokens it was allowed, and still paid for.
    assert finals[0]["completion_tokens"] > 2 * 1024 and finals[0]["cost_usd"] > 0
    assert result.status == "success" and "in transit" in (result.final_answer or "")
