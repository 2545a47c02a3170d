"""``foreman models check`` against a real OpenAI-compatible server process (the fake provider)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from app.cli.main import app
from tests.fake_provider.config import write_config
from tests.fake_provider.process import FakeProvider


@pytest.fixture
def fake(fake_llm: FakeProvider) -> FakeProvider:
    fake_llm.control(reset=True, first_token_delay_ms=0, chunk_delay_ms=0)
    return fake_llm


def check(config: Path, *extra: str) -> tuple[int, Any]:
    result = CliRunner().invoke(app, ["models", "check", "--config", str(config), *extra])
    return result.exit_code, result.output


def test_models_check_passes_every_probe_on_a_working_server(
        fake: FakeProvider, tmp_path: Path) -> None:
    fake.control(reset=True)
    code, out = check(write_config(tmp_path / "foreman.yaml", fake.api_base), "--json")
    report = json.loads(out)

    assert code == 0 and report["ok"] is True
    [small, large] = report["models"]
    assert small["name"] == "local-small" and "manager.final" in small["roles"]
    assert large["roles"] == []  # not routed, but reachable: checked too
    checks = small["checks"]
    assert {k: v["ok"] for k, v in checks.items()} == {
        "key": True, "reachable": True, "tools": True, "json": True, "streaming": True,
        "price": True, "context": True}
    assert checks["json"]["detail"].startswith("JSON Schema")
    assert "record_number" in checks["tools"]["detail"]
    assert checks["context"]["detail"] == "32768 tokens"
    assert "foreman.yaml" in checks["price"]["detail"]
    sent = fake.requests()
    assert any(r.get("stream") for r in sent)
    assert any(r.get("messages", [{}])[-1].get("role") == "tool" for r in sent)


def test_models_check_fails_when_the_model_ignores_the_tool(
        fake: FakeProvider, tmp_path: Path) -> None:
    fake.control(reset=True, replies=[{"content": "ready"},
                                      {"content": "I would rather not call tools."}])
    code, out = check(write_config(tmp_path / "foreman.yaml", fake.api_base),
                      "--model", "local-small")
    assert code == 1
    assert "FAIL" in out and "no record_number tool call" in out
    assert "1 of 1 models failed: local-small" in out


def test_models_check_reports_an_unreachable_server_and_a_missing_key(
        fake: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "foreman.yaml", "http://127.0.0.1:9/v1")  # nothing there
    data = yaml.safe_load(config.read_text())
    data["models"].append({"name": "hosted", "litellm_model": "openai/gpt-4o-mini",
                           "api_key_env": "FOREMAN_TEST_ABSENT_KEY"})
    data["routing"]["roles"]["manager.plan"] = "hosted"
    config.write_text(yaml.safe_dump(data))
    monkeypatch.delenv("FOREMAN_TEST_ABSENT_KEY", raising=False)
    code, out = check(config, "--json")
    report = {m["name"]: m["checks"] for m in json.loads(out)["models"]}

    assert code == 1
    assert report["local-small"]["reachable"]["ok"] is False
    assert report["local-small"]["tools"] == {"ok": None, "detail": "skipped: not reachable"}
    assert report["hosted"]["key"] == {"ok": False,
                                       "detail": "FOREMAN_TEST_ABSENT_KEY is not set"}
    assert report["hosted"]["price"]["ok"] is True  # priced from litellm's map
    assert "litellm's map" in report["hosted"]["price"]["detail"]
