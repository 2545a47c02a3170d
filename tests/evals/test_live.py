"""``foreman eval --live`` against a real OpenAI-compatible server process (the fake provider):
no scripted provider, decisions from the scenario, scored on the world, a report that says
"live" and names the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.config.settings import load_settings
from evals.live import live_eval
from tests.fake_provider.config import write_config
from tests.fake_provider.process import FakeProvider


def test_live_eval_runs_a_scenario_on_the_configured_models(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_llm: FakeProvider) -> None:
    monkeypatch.delenv("FOREMAN_OFFLINE", raising=False)
    fake_llm.control(reset=True, first_token_delay_ms=0, chunk_delay_ms=0)
    settings = load_settings(write_config(tmp_path / "foreman.yaml", fake_llm.api_base))
    code = live_eval(settings, report=tmp_path / "report", pattern="support-refund-approve")
    sent = fake_llm.requests()

    data = json.loads((tmp_path / "report" / "live.json").read_text())
    [record] = data["records"]
    assert code == 0 and data["meta"]["mode"] == "live"
    assert data["meta"]["models"]["manager.final"] == "local-small"
    assert record["scenario"] == "support-refund-approve" and record["passed"] is True
    assert set(record["models"]) <= {"local-small", "local-large"}  # never a scripted one
    assert record["asked"] == ["issue_refund"]  # the scenario's human approved it
    assert len(sent) == record["model_calls"]  # every call went over the socket
    md = (tmp_path / "report" / "live.md").read_text()
    assert md.startswith("# Foreman eval — live") and "`manager.plan` → `local-small`" in md
    assert "Injection scenarios here measure prompt defences" in md
    assert data["meta"]["injection_measures"].startswith("prompt defences")


def test_live_eval_refuses_to_run_offline(tmp_path: Path) -> None:
    settings = load_settings(Path(__file__).parents[2] / "foreman.yaml").model_copy(
        update={"offline": True})
    assert live_eval(settings, report=tmp_path, pattern="support-refund-approve") == 2
    assert not (tmp_path / "live.json").exists()
