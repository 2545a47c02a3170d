"""A user's project (``foreman init``) on a real MCP server: approval over the HTTP API,
SIGKILL inside the write, a server that went away. The CRM's own SQLite file is the truth."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config.settings import load_settings
from app.services import open_services
from app.storage.thread_keys import thread_key
from tests.app.tooling.crm import Crm
from tests.e2e.mcp_project import ROOT, TASK, clean_env, make_project, serving, wait_for


@pytest.fixture
def crm(tmp_path: Path) -> Iterator[Crm]:
    server = Crm(tmp_path / "crm.db", hang_file=tmp_path / "hang").start()
    yield server
    server.stop()


def test_mcp_project_run_pauses_on_cel_rule_and_credits_once_after_approval(
        crm: Crm, tmp_path: Path) -> None:
    config = make_project(tmp_path / "desk", crm.url)
    with serving(config, tmp_path) as served, httpx.Client(
            base_url=served.base_url, timeout=60) as c:
        def ready() -> dict[str, Any] | None:
            served.assert_alive()
            try:
                r = c.get("/readyz")
            except httpx.HTTPError:
                return None
            return dict(r.json()) if r.status_code == 200 else None

        readyz = wait_for(ready, "readyz")
        thread = c.post("/threads", json={}).json()["thread_id"]
        run = c.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "desk", "input": {"messages": [{"role": "user",
                                                           "content": TASK}]}})
        assert run.status_code == 200, run.text
        pending = c.get("/v1/approvals", params={"status": "pending"}).json()
        assert crm.credits() == []  # paused before anything was sent
        decided = c.post(f"/v1/approvals/{pending[0]['id']}/decision",
                         json={"decision": "approve"})
        assert decided.status_code == 200, decided.text
        wait_for(lambda: c.get(f"/threads/{thread}").json()["status"] == "idle",
                 "the run to finish")
        state = c.get(f"/threads/{thread}/state").json()
        audit = c.get("/v1/audit").json()
        verified = c.get("/v1/audit/verify").json()
    banner = (tmp_path / "serve.log").read_text()
    assert "MCP servers: crm" in banner
    assert readyz["mcp"] == {"crm": "connected"}
    assert [(a["action"], a["rule"]) for a in pending] == [
        ("crm.add_credit", "credits-over-100")]
    assert pending[0]["args"]["amount_usd"] == 150.0
    assert crm.credits() == [("CU-1", 150.0, crm.credits()[0][2])]
    # the ledger's key went in _meta (it names the thread by its key: tenant and id)
    assert crm.credits()[0][2].startswith(f"{thread_key('default', thread)}:")
    assert "$150 credit" in (state["values"].get("final_answer") or "")
    assert verified["ok"] is True and verified["entries"] > 0  # the chain covers MCP calls
    assert any("crm.add_credit" in str(entry) for entry in audit)  # approval + call audited


async def test_mcp_project_sigkill_after_the_write_landed_never_credits_twice(
        crm: Crm, tmp_path: Path) -> None:
    config = make_project(tmp_path / "desk", crm.url)
    (tmp_path / "hang").write_text("once")  # the CRM applies the write, then never answers
    proc = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, str(ROOT / "tests/e2e/mcp_crash.py"), str(config)],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    try:
        assert proc.stdout is not None
        thread_id = (await asyncio.to_thread(proc.stdout.readline)).strip()
        await asyncio.to_thread(wait_for, crm.credits, "the credit to land on the server")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -9

    app_db = sqlite3.connect(config.parent / ".foreman" / "foreman.db")
    ledger = app_db.execute("SELECT status FROM tool_calls WHERE tool = 'crm.add_credit'")
    assert ledger.fetchall() == [("STARTED",)]
    app_db.close()
    async with open_services(load_settings(config)) as s:
        done = await s.runner.resume(thread_id)
        results = [e["data"] for e in s.store.events(done.run_id) if e["type"] == "tool_result"
                   and e["data"]["tool"] == "crm.add_credit"]

    assert done.status == "success", done.error
    assert results[-1]["result"]["reconciled"] is True
    assert [c[:2] for c in crm.credits()] == [("CU-1", 150.0)]


async def test_mcp_project_server_down_mid_run_ends_with_an_honest_answer(
        crm: Crm, tmp_path: Path) -> None:
    config = make_project(tmp_path / "desk", crm.url, reconnect_after_s=3600)
    async with open_services(load_settings(config)) as s:
        assert [i.status for i in s.toolbox.servers()] == ["connected"]
        crm.stop()
        run = await s.runner.start(TASK, "desk")
        if run.status == "interrupted":  # the credit's approval, if the read got through
            pytest.fail("the run should have stopped at the unavailable read")
        events = s.store.events(run.run_id)

    failed = [e["data"] for e in events if e["type"] == "tool_result"]
    assert failed and failed[0]["tool"] == "crm.get_customer" and not failed[0]["ok"]
    assert run.status == "error"  # the task was not done, and the status says so
    assert "$150 credit" not in (run.final_answer or "")
    assert "crm" in (run.final_answer or "")
    assert crm.credits() == []
