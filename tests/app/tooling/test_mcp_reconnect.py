"""A server that is down, dies or comes back later: background reconnects with a backoff,
and the status follows the real session. Real CRM server processes throughout."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from app.tooling.config import McpServerConfig
from app.tooling.mcp_client import McpConnection
from app.tooling.mcp_tools import placeholder
from tests.app.tooling.crm import SERVER, Crm, free_port, until


async def test_mcp_server_down_at_start_is_retried_with_backoff_then_connects(
        tmp_path: Path) -> None:
    crm = Crm(tmp_path / "late.db", port=free_port())  # not started yet
    config = McpServerConfig.model_validate({
        "name": "crm", "url": crm.url, "connect_timeout_s": 10, "call_timeout_s": 20,
        "reconnect_after_s": 0.1, "reconnect_max_s": 0.4})
    seen: list[int] = []
    conn = McpConnection(config, tmp_path, on_connected=lambda c: seen.append(len(c.tools)))
    try:
        await conn.connect()
        assert conn.status == "down" and conn.tools == []
        refused = placeholder(conn, "crm.get_customer")
        await asyncio.sleep(2.0)
        tried = conn.attempts
        crm.start()
        await until(lambda: conn.status == "connected", "the late server to connect")
        result = await conn.call("get_customer", {"customer_id": "CU-2"})
    finally:
        await conn.close()
        crm.stop()
    # Retried in the background (no call asked), but backing off rather than spinning:
    # 0.4 s apart at most, so at most about six tries in two seconds.
    assert 2 <= tried <= 8, tried
    assert seen == [len(conn.tools)] and {t.name for t in conn.tools} >= {"add_credit",
                                                                          "get_customer"}
    assert result.structured_content is not None
    assert result.structured_content["name"] == "Alan Turing"
    assert conn.status == "closed"
    try:
        refused.validate({"customer_id": "CU-1"})
    except ValueError as e:  # the placeholder of the down server names it and sends nothing
        assert "MCP server crm is unavailable" in str(e) and "Nothing was sent" in str(e)
    else:
        raise AssertionError("a placeholder must refuse every call")


async def test_mcp_stdio_server_that_died_shows_down_then_comes_back(tmp_path: Path) -> None:
    pid_file = tmp_path / "crm.pid"
    config = McpServerConfig.model_validate({
        "name": "crm", "command": [sys.executable, str(SERVER), "stdio"],
        "env": {"CRM_DB": str(tmp_path / "stdio.db"), "CRM_PID_FILE": str(pid_file)},
        "connect_timeout_s": 30, "call_timeout_s": 30, "reconnect_after_s": 0.5,
        "health_interval_s": 0.2})
    connects: list[str] = []
    conn = McpConnection(config, tmp_path, on_connected=lambda c: connects.append(c.status))
    try:
        await conn.connect()
        assert conn.status == "connected", conn.error
        first = int(pid_file.read_text())
        os.kill(first, signal.SIGKILL)  # no call is made: only the health check can tell
        await until(lambda: conn.status == "down", "the dead server to show as down", within_s=20)
        down_error = conn.error
        await until(lambda: conn.status == "connected", "the server to be restarted", within_s=60)
        second = int(pid_file.read_text())
        result = await conn.call("get_customer", {"customer_id": "CU-1"})
    finally:
        await conn.close()
    assert down_error  # says why (connection closed / lost)
    assert second != first and connects == ["connected", "connected"]
    assert result.structured_content is not None
    assert result.structured_content["name"] == "Ada Lovelace"
    await until(lambda: not _alive(second), "the closed session's process to exit", within_s=20)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is a process that exited: only its parent's reap is missing.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"
