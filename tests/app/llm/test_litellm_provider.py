"""The real litellm → openai → httpx path, with the OpenAI wire mocked by respx."""

from __future__ import annotations

import hashlib
import json
import threading
import types
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from app.config.settings import ModelEntry, RoutingConfig, Settings
from app.llm import scripted
from app.services import open_services
from graphs.ports import ModelRequest
from tests.fakes import chat_body

BASE = "http://llm.test/v1"
TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


def wire_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("FOREMAN_TEST_KEY", "sk-test-not-a-real-key")
    model = ModelEntry(name="mini", litellm_model="openai/gpt-4o-mini", tier="small",
                       api_base=BASE, api_key_env="FOREMAN_TEST_KEY")
    roles = {r: "mini" for r in ("manager.plan", "manager.progress", "manager.verify",
                                 "manager.final", "specialist")}
    return settings.model_copy(update={
        "offline": False, "models": [*settings.models, model],
        "routing": RoutingConfig(roles=roles, offline=settings.routing.offline)})


def role_of(body: dict[str, Any]) -> str:
    """Which Foreman role sent this wire request (read from the prompt, as a model would)."""
    system = body["messages"][0]["content"]
    if body.get("tools"):
        return "specialist." + system.split('"', 2)[1]
    last = body["messages"][-1]["content"]
    for marker, role in (("Write the task ledger", "manager.plan"),
                         ("Write the final answer", "manager.final"),
                         ("Before the request is declared done", "manager.verify")):
        if marker in last:
            return role
    return "manager.progress"


def brain(request: httpx.Request) -> httpx.Response:
    """Answer at the wire level with the scripted models' reasoning."""
    body = json.loads(request.content)
    req = ModelRequest(role=role_of(body), messages=body["messages"],
                       call_key=hashlib.sha256(request.content).hexdigest())
    reply = scripted.ScriptedProvider()._default(req)
    calls = [{"id": c.id, "name": c.name, "args": json.loads(c.arguments)}
             for c in reply.tool_calls]
    return httpx.Response(200, json=chat_body(reply.content, calls or None,
                                              prompt_tokens=400, completion_tokens=60))


async def test_litellm_path_drives_a_demo_run_end_to_end(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, sandbox_rows: Any) -> None:
    wired = wire_settings(settings, monkeypatch)
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(f"{BASE}/chat/completions").mock(side_effect=brain)
        async with open_services(wired) as s:
            assert s.offline is False
            result = await s.runner.start(TASK, "support")
            events = s.store.events(result.run_id)

    assert result.status == "success" and result.stop_reason == "satisfied"
    assert sandbox_rows("SELECT order_id, amount_usd FROM refunds") == [
        {"order_id": "O-5002", "amount_usd": 189.0}]
    calls = [e["data"] for e in events if e["type"] == "model_call"]
    assert route.call_count == len(calls) == result.model_calls
    sent = json.loads(route.calls[0].request.content)
    # gpt-4o-mini takes JSON Schema (litellm's map says so): the plan's schema is sent.
    fmt = sent["response_format"]
    assert sent["model"] == "gpt-4o-mini" and fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "TaskLedgerOut"
    assert "plan" in fmt["json_schema"]["schema"]["properties"]
    specialist = next(json.loads(c.request.content) for c in route.calls
                      if json.loads(c.request.content).get("tools"))
    assert {t["function"]["name"] for t in specialist["tools"]} == {
        "lookup_customer", "lookup_order", "list_orders", "get_ticket", "find_tickets",
        "search_knowledge", "report"}
    # gpt-4o-mini is priced from litellm's bundled map: $0.15 / $0.60 per million tokens.
    assert calls[0]["cost_usd"] == pytest.approx((400 * 0.15 + 60 * 0.60) / 1e6, rel=0.01)


async def test_litellm_provider_fault_ends_the_run_with_an_honest_answer(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, sandbox_rows: Any) -> None:
    wired = wire_settings(settings, monkeypatch)
    with respx.mock(assert_all_mocked=True) as mock:
        mock.post(f"{BASE}/chat/completions").mock(
            return_value=httpx.Response(500, json={"error": {"message": "boom"}}))
        async with open_services(wired) as s:
            result = await s.runner.start(TASK, "support")

    assert result.status == "error"
    assert result.stop_reason == "model_unavailable"
    assert "no step of the plan was completed" in (result.final_answer or "")
    assert sandbox_rows("SELECT COUNT(*) AS n FROM refunds") == [{"n": 0}]


def test_litellm_is_not_imported_by_the_cli_module() -> None:
    import subprocess
    import sys

    code = "import sys, app.cli.main; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parents[3], check=True)
    assert out.stdout.strip() == "False"


async def test_litellm_first_import_runs_off_the_event_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.llm import litellm_provider

    threads: list[str] = []
    module = types.ModuleType("litellm")

    def load() -> types.ModuleType:
        threads.append(threading.current_thread().name)
        monkeypatch.setattr(litellm_provider, "_litellm", module)
        return module

    monkeypatch.setattr(litellm_provider, "_litellm", None)
    monkeypatch.setattr(litellm_provider, "load_litellm", load)
    assert await litellm_provider.litellm_ready() is module
    assert threads and threads[0] != threading.main_thread().name
    assert await litellm_provider.litellm_ready() is module  # loaded: no second import
    assert len(threads) == 1
