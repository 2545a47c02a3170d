"""A ``foreman init`` project whose MCP server is not there at start, or dies under a
running ``foreman serve``: clear tool errors meanwhile, tools and status back once it is."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import yaml

from app.config.settings import load_settings
from app.services import open_services
from tests.app.tooling.crm import SERVER, Crm, free_port, until
from tests.e2e.mcp_project import TASK, make_project, serving, wait_for

FAST = {"reconnect_after_s": 0.2, "reconnect_max_s": 0.5, "connect_timeout_s": 10,
        "health_interval_s": 0.3}




def tool_results(s: Any, run_id: str, tool: str) -> list[dict[str, Any]]:
    return [e["data"] for e in s.store.events(run_id)
            if e["type"] == "tool_result" and e["data"]["tool"] == tool]


async def test_mcp_server_started_after_foreman_gets_its_tools_without_a_restart(
        tmp_path: Path) -> None:
    crm = Crm(tmp_path / "crm.db", port=free_port())  # down when Foreman starts
    config = make_project(tmp_path / "desk", crm.url, **FAST)
    data = yaml.safe_load(config.read_text())
    data["teams"]["desk"]["agents"][0]["tools"] = ["crm.get_customer", "crm.add_credit"]
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        async with open_services(load_settings(config)) as s:
            assert [i.status for i in s.toolbox.servers()] == ["down"]
            assert "crm.find_credit" not in s.registry  # unknown until the server answers
            early = await s.runner.start(TASK, "desk")
            refused = tool_results(s, early.run_id, "crm.get_customer")

            await asyncio.to_thread(crm.start)
            await until(lambda: "crm.find_credit" in s.registry, "the server's tools", within_s=60)
            status = [i.status for i in s.toolbox.servers()]
            later = await s.runner.start(TASK, "desk")
            got = tool_results(s, later.run_id, "crm.get_customer")
            pending = s.store.run_approvals(later.run_id)
    finally:
        crm.stop()

    assert refused and not refused[0]["ok"] and refused[0]["executed"] is False
    assert "MCP server crm is unavailable" in refused[0]["error"]
    assert "Nothing was sent" in refused[0]["error"]
    assert early.status == "error"  # the task was not done, and the status says so
    assert status == ["connected"]
    assert got and got[0]["ok"] is True  # the same agent, the real tool, no restart
    assert later.status == "interrupted"  # the $150 credit waits for a lead's approval
    assert [(a.action, a.status) for a in pending] == [("crm.add_credit", "pending")]
    assert crm.credits() == []


def test_serve_readyz_shows_a_killed_stdio_server_down_then_back(tmp_path: Path) -> None:
    config = make_project(tmp_path / "desk", "http://127.0.0.1:1/mcp")
    pid_file = tmp_path / "crm.pid"
    data = yaml.safe_load(config.read_text())
    data["tools"]["mcp"] = [{
        "name": "crm", "command": ["python", str(SERVER), "stdio"], **FAST,
        "env": {"CRM_DB": str(tmp_path / "crm.db"), "CRM_PID_FILE": str(pid_file)}}]
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    seen: list[str] = []
    with serving(config, tmp_path) as served, httpx.Client(
            base_url=served.base_url, timeout=30) as c:
        def crm_status(want: str) -> bool:
            served.assert_alive()
            try:
                r = c.get("/readyz")
            except httpx.HTTPError:
                return False
            if r.status_code != 200:
                return False
            status = str(r.json()["mcp"]["crm"])
            if not seen or seen[-1] != status:
                seen.append(status)
            return status == want

        wait_for(lambda: crm_status("connected"), "crm connected", 120)
        first = int(pid_file.read_text())
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: crm_status("down"), "readyz to show crm down", 30)
        wait_for(lambda: crm_status("connected"), "crm reconnected", 60)
        second = int(pid_file.read_text())
    assert seen[-3:] == ["connected", "down", "connected"]
    assert second != first
