"""Figures 8 and 9: an MCP tool call through Foreman against the raw ``mcp`` client call on
the same stdio server; ``foreman serve`` to ready with three MCP servers against none."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

from app.project.init import TEMPLATES
from app.runs.executor import LedgerExecutor
from app.storage.db import SqliteDatabase
from app.storage.store import Store
from app.tooling.config import McpServerConfig
from app.tooling.mcp_client import McpConnection
from app.tooling.mcp_tools import tool_specs
from evals.bench.coldstart import _foreman, _free_port, _to_healthy
from evals.bench.stats import Row, Stat
from graphs.ports import ToolInvocation
from tools.registry import ToolRegistry

SERVER = TEMPLATES / "blank" / "helpdesk_server.py"
CALLS = 200
OVERHEAD_GOAL_MS = 2.0
READY_GOAL_S = 1.0
ARGS = {"customer_id": "CU-1"}


async def _paired(db: Path, workdir: Path, rep: int, n: int) -> tuple[list[float], list[float]]:
    """Interleaved calls on one stdio session: the raw SDK call, then the same call
    through Foreman's executor (ledger rows, schema validation, result labelling)."""
    config = McpServerConfig(name="helpdesk", command=[sys.executable, str(SERVER)],
                             env={"HELPDESK_DB": str(db)})
    conn = McpConnection(config, workdir)
    await conn.connect()
    session = conn._session  # the SDK's own ClientSession: the raw baseline
    assert session is not None, conn.error
    reg = ToolRegistry()
    reg.add_all(tool_specs(conn), "mcp:helpdesk")
    store = Store(SqliteDatabase(workdir / f"bench-mcp-{rep}.db"))
    executor = LedgerExecutor(store, reg)
    raw, ours = [], []
    try:
        for i in range(n):
            started = time.perf_counter()
            await session.call_tool("get_customer", ARGS)
            raw.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            result = await executor.execute(ToolInvocation(
                key=f"t-bench-{rep}:{i}", thread_id="t-bench", agent="bench",
                tool="helpdesk.get_customer", args=ARGS))
            ours.append((time.perf_counter() - started) * 1000)
            assert result.ok and not result.replayed, result.data
    finally:
        await conn.close()
        store.close()
    return raw, ours


def _project(workdir: Path, servers: int) -> Path:
    folder = workdir / f"mcp-project-{servers}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(TEMPLATES / "blank", folder)
    config = folder / "foreman.yaml"
    data = yaml.safe_load(config.read_text())
    data["tools"]["mcp"] = [{"name": f"desk{i}", "command": ["python", "helpdesk_server.py"],
                             "env": {"HELPDESK_DB": f".foreman/desk{i}.db"}}
                            for i in range(servers)]
    data["teams"]["desk"]["agents"][0]["tools"] = [f"desk{i}.*" for i in range(servers)] or [
        "search_knowledge"]
    data["policy"]["rules"] = []
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def _ready(workdir: Path, reps: int) -> tuple[list[float], list[float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOREMAN_")}
    env.update({"FOREMAN_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    none: list[float] = []
    three: list[float] = []
    for _ in range(reps):
        for servers, into in ((0, none), (3, three)):
            config = _project(workdir, servers)
            port = _free_port()
            into.append(_to_healthy([*_foreman(), "serve", "--port", str(port), "--config",
                                     str(config)], port, env, timeout_s=180,
                                    path="/readyz"))
    return none, three


def _p50(samples: list[float]) -> float:
    return sorted(samples)[len(samples) // 2]


async def mcp_figures(workdir: Path, reps: int) -> list[Row]:
    """Rows for figures 8 and 9."""
    raw_p50: list[float] = []
    ours_p50: list[float] = []
    for i in range(reps):
        raw, ours = await _paired(workdir / f"helpdesk-{i}.db", workdir, i, CALLS)
        raw_p50.append(_p50(raw))
        ours_p50.append(_p50(ours))
    overhead = Stat.of([o - r for o, r in zip(ours_p50, raw_p50, strict=True)])
    none, three = await asyncio.to_thread(_ready, workdir, max(2, reps // 2))
    extra = Stat.of([t - n for t, n in zip(three, none, strict=True)])
    return [
        Row("8 mcp call", f"MCP read call through Foreman (ledger, validation), p50 of {CALLS}",
            Stat.of(ours_p50), "ms", Stat.of(raw_p50),
            "raw mcp ClientSession.call_tool, same session"),
        Row("8 mcp call", "overhead of Foreman over the raw client, p50", overhead, "ms",
            goal=f"<= {OVERHEAD_GOAL_MS:g} ms", met=overhead.median <= OVERHEAD_GOAL_MS),
        Row("9 mcp start", "foreman serve to /readyz with 3 stdio MCP servers", Stat.of(three),
            "s", Stat.of(none), "no MCP servers"),
        Row("9 mcp start", "extra time to ready for 3 servers (concurrent connect)", extra, "s",
            goal=f"<= {READY_GOAL_S:g} s", met=extra.median <= READY_GOAL_S),
    ]
