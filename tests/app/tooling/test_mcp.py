"""MCP tools against a real CRM server process: mapping, governance seams, failures."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.runs.executor import LedgerExecutor
from app.storage.db import SqliteDatabase
from app.storage.store import Store
from app.tooling.config import McpServerConfig
from app.tooling.mcp_client import McpConnection
from app.tooling.mcp_tools import tool_specs
from graphs.ports import ToolInvocation
from tests.app.tooling.crm import SERVER, Crm
from tools.registry import ToolRegistry
from tools.spec import Risk, SideEffect

CREDIT = {"customer_id": "CU-1", "amount_usd": 25.0, "reason": "late delivery"}


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crm]:
    server = Crm(tmp_path_factory.mktemp("crm") / "crm.db").start()
    yield server
    server.stop()


def http_config(crm: Crm, **extra: Any) -> McpServerConfig:
    return McpServerConfig.model_validate({
        "name": "crm", "url": crm.url, "connect_timeout_s": 20, "call_timeout_s": 20,
        "reconnect_after_s": 0, **extra})


async def connected(config: McpServerConfig, tmp_path: Path) -> McpConnection:
    conn = McpConnection(config, tmp_path)
    await conn.connect()
    assert conn.status == "connected", conn.error
    return conn


def executor(tmp_path: Path, conn: McpConnection, shadow: bool = False) -> LedgerExecutor:
    reg = ToolRegistry()
    reg.add_all(tool_specs(conn), "mcp:crm")
    return LedgerExecutor(Store(SqliteDatabase(tmp_path / "foreman.db")), reg, shadow=shadow)


def call(key: str, tool: str = "crm.add_credit",
         args: dict[str, Any] | None = None) -> ToolInvocation:
    return ToolInvocation(key=key, thread_id="t-1", agent="desk", tool=tool,
                          args=CREDIT if args is None else args)


async def test_mcp_stdio_annotations_map_to_side_effect_and_risk(tmp_path: Path) -> None:
    config = McpServerConfig.model_validate({
        "name": "crm", "command": [sys.executable, str(SERVER), "stdio"],
        "env": {"CRM_DB": str(tmp_path / "stdio.db")}, "exclude": ["big_*"],
        "overrides": {"get_customer": {"risk": "medium"}}, "connect_timeout_s": 30})
    conn = await connected(config, tmp_path)
    try:
        specs = {s.name: s for s in tool_specs(conn)}
        out = await executor(tmp_path, conn).execute(call("t-1:c1"))
    finally:
        await conn.close()
    assert set(specs) == {"crm.get_customer", "crm.find_credit", "crm.add_credit"}
    add = specs["crm.add_credit"]
    assert (add.side_effect, add.risk, add.idempotent) == (SideEffect.WRITE, Risk.MEDIUM, True)
    assert (specs["crm.find_credit"].side_effect, specs["crm.find_credit"].risk) == (
        SideEffect.READ, Risk.LOW)
    assert specs["crm.get_customer"].risk == Risk.MEDIUM  # the override wins
    assert add.source == "mcp:crm" and add.untrusted_output
    assert add.openai_schema()["function"]["name"] == "crm__add_credit"
    assert out.ok and out.data["structured"]["idempotency_key"] == "t-1:c1"
    assert out.data["untrusted"].startswith("output of crm.add_credit")


async def test_mcp_write_carries_the_ledger_key_and_runs_once(crm: Crm, tmp_path: Path) -> None:
    conn = await connected(http_config(crm), tmp_path)
    ex = executor(tmp_path, conn)
    try:
        first = await ex.execute(call("t-once:c1"))
        again = await ex.execute(call("t-once:c1"))
    finally:
        await conn.close()
    assert first.ok and again.replayed and again.data == first.data
    assert crm.credits("idempotency_key = 't-once:c1'") == [("CU-1", 25.0, "t-once:c1")]
    assert ex.store.tool_get("t-once:c1")["status"] == "DONE"


async def test_mcp_schema_invalid_args_are_refused_before_sending(crm: Crm,
                                                                  tmp_path: Path) -> None:
    conn = await connected(http_config(crm), tmp_path)
    try:
        out = await executor(tmp_path, conn).execute(
            call("t-bad:c1", args={"customer_id": "nobody", "amount_usd": -5, "reason": "x"}))
    finally:
        await conn.close()
    assert not out.ok
    assert "customer_id" in out.data["error"] and "amount_usd" in out.data["error"]
    assert crm.credits("idempotency_key = 't-bad:c1'") == []


async def test_mcp_shadow_mode_records_the_write_without_sending(crm: Crm,
                                                                 tmp_path: Path) -> None:
    conn = await connected(http_config(crm), tmp_path)
    try:
        out = await executor(tmp_path, conn, shadow=True).execute(call("t-shadow:c1"))
    finally:
        await conn.close()
    assert out.ok and out.data["shadow"] is True and out.data["executed"] is False
    assert crm.credits("idempotency_key = 't-shadow:c1'") == []


async def test_mcp_tool_error_and_oversized_result_reach_the_model(crm: Crm,
                                                                   tmp_path: Path) -> None:
    conn = await connected(http_config(crm, max_result_chars=1000), tmp_path)
    ex = executor(tmp_path, conn)
    try:
        missing = await ex.execute(call("t-e:c1", "crm.get_customer", {"customer_id": "CU-99"}))
        big = await ex.execute(call("t-e:c2", "crm.big_report", {}))
    finally:
        await conn.close()
    assert not missing.ok and "no customer CU-99" in missing.data["error"]
    assert big.ok and len(big.data["text"]) == 1000
    assert "cut to 1000 of 200000" in big.data["note"] and "structured" not in big.data


async def test_mcp_started_write_is_reconciled_by_key_not_resent(crm: Crm,
                                                                 tmp_path: Path) -> None:
    config = http_config(crm, overrides={"add_credit": {"reconcile": {"tool": "find_credit"}}})
    conn = await connected(config, tmp_path)
    ex = executor(tmp_path, conn)
    try:
        # A first attempt landed on the server, then the process died before DONE.
        await conn.call("add_credit", CREDIT, {"foreman/idempotency_key": "t-crash:c1"})
        ex.store.tool_started("t-crash:c1", "t-1", "desk", "crm.add_credit", "x")
        out = await ex.execute(call("t-crash:c1"))
    finally:
        await conn.close()
    assert out.ok and out.data["reconciled"] is True
    assert out.data["structured"]["idempotency_key"] == "t-crash:c1"
    assert len(crm.credits("idempotency_key = 't-crash:c1'")) == 1


async def test_mcp_started_write_without_reconcile_goes_to_a_human(crm: Crm,
                                                                   tmp_path: Path) -> None:
    conn = await connected(http_config(crm), tmp_path)
    ex = executor(tmp_path, conn)
    try:
        ex.store.tool_started("t-blind:c1", "t-1", "desk", "crm.add_credit", "x")
        out = await ex.execute(call("t-blind:c1"))
    finally:
        await conn.close()
    assert not out.ok and out.data["needs_human"] is True
    assert crm.credits("idempotency_key = 't-blind:c1'") == []


async def test_mcp_server_down_is_a_tool_error_then_reconnects(tmp_path: Path) -> None:
    crm = Crm(tmp_path / "down.db").start()
    conn = await connected(http_config(crm), tmp_path)
    ex = executor(tmp_path, conn)
    try:
        crm.stop()
        down = await ex.execute(call("t-down:c1", "crm.get_customer", {"customer_id": "CU-1"}))
        crm.start()  # same port: the next call reconnects
        back = await ex.execute(call("t-down:c2", "crm.get_customer", {"customer_id": "CU-1"}))
    finally:
        await conn.close()
        crm.stop()
    assert not down.ok and down.data["error"].startswith("crm.get_customer")
    assert "went away" in down.data["error"] or "unavailable" in down.data["error"]
    assert back.ok and back.data["structured"]["name"] == "Ada Lovelace"


async def test_mcp_stdio_server_killed_mid_session_errors_then_restarts(tmp_path: Path) -> None:
    pid_file = tmp_path / "crm.pid"
    config = McpServerConfig.model_validate({
        "name": "crm", "command": [sys.executable, str(SERVER), "stdio"],
        "env": {"CRM_DB": str(tmp_path / "stdio.db"), "CRM_PID_FILE": str(pid_file)},
        "connect_timeout_s": 30, "call_timeout_s": 30, "reconnect_after_s": 0})
    conn = await connected(config, tmp_path)
    ex = executor(tmp_path, conn)
    try:
        first_pid = int(pid_file.read_text())
        os.kill(first_pid, signal.SIGKILL)
        lost = await ex.execute(call("t-k:c1"))
        back = await ex.execute(call("t-k:c2", "crm.get_customer", {"customer_id": "CU-2"}))
        second_pid = int(pid_file.read_text())
    finally:
        await conn.close()
    assert not lost.ok and "may or may not have been applied" in lost.data["error"]
    assert back.ok and back.data["structured"]["name"] == "Alan Turing"
    assert second_pid != first_pid
