"""A project's own Python tool pack, governed like the bundled tools: CEL policy over its
arguments, approval (an edit checked against its schema), exactly once, kill switch."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.api.auth import Principal
from app.config.settings import load_settings
from app.errors import ConfigError, InvalidRequest
from app.governance.resumers import InlineResume
from app.project.init import init_project
from app.services import open_services

TASK = "Give customer C-7 a credit of $300 for the broken kettle"
PACK = '''
import sqlite3
from typing import Annotated, Any

from pydantic import Field

from tools.pack import tool
from tools.spec import ToolContext


@tool(side_effect="write", risk="medium")
def add_credit(ctx: ToolContext, customer_id: str,
               amount_usd: Annotated[float, Field(gt=0, le=1000)]) -> dict[str, Any]:
    """Give a customer a credit in USD."""
    conn = sqlite3.connect(ctx.settings["db"])
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS credits "
                     "(key TEXT UNIQUE, customer TEXT, usd REAL)")
        conn.execute("INSERT OR IGNORE INTO credits VALUES (?, ?, ?)",
                     (ctx.idempotency_key, customer_id, amount_usd))
    conn.close()
    return {"customer_id": customer_id, "amount_usd": amount_usd}
'''
PLAYBOOK = [{
    "id": "pack-credit", "team": "desk", "match": {"all": ["C-7", "credit"]},
    "facts": {"given": ["C-7 gets a credit"], "to_look_up": [], "to_derive": [], "guesses": []},
    "steps": [{"id": "S1", "agent": "agent", "goal": "Credit the customer.",
               "instruction": "Give customer C-7 a $300 credit for the broken kettle.",
               "calls": [{"tool": "add_credit",
                          "args": {"customer_id": "C-7", "amount_usd": 300.0}}],
               "report": "Credited C-7."}],
    "final": "Customer C-7 was credited.",
}]
BOB = Principal("bob", "default", frozenset({"approver"}))


def project(folder: Path, **data_update: Any) -> Path:
    init_project(folder, "blank")
    (folder / "desk_tools.py").write_text(PACK)
    (folder / "playbooks" / "pack.yaml").write_text(yaml.safe_dump(PLAYBOOK))
    config = folder / "foreman.yaml"
    data = yaml.safe_load(config.read_text())
    data["tools"] = {"packs": [{"name": "desk_tools", "settings": {"db": str(folder / "c.db")}}],
                     "mcp": []}
    data["teams"]["desk"]["agents"][0]["tools"] = ["add_*"]
    data["policy"]["rules"] = [{"name": "credits-over-100", "tools": ["add_credit"],
                                "when": "args.amount_usd > 100.0", "action": "require_approval",
                                "reason": "big credit"}]
    data.update(data_update)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def credits(folder: Path) -> list[tuple[str, float]]:
    conn = sqlite3.connect(folder / "c.db")
    try:
        return conn.execute("SELECT customer, usd FROM credits").fetchall()
    finally:
        conn.close()


async def test_packs_project_tool_pauses_on_cel_rule_edit_is_checked_then_runs_once(
        tmp_path: Path) -> None:
    folder = tmp_path / "desk"
    async with open_services(load_settings(project(folder))) as s:
        run = await s.runner.start(TASK, "desk", created_by="alice")
        value = run.interrupts[0].value
        approval = value["approval_id"]
        with pytest.raises(InvalidRequest):  # the edit must fit the tool's schema
            await s.approvals.decide(BOB, approval, "edit", InlineResume(s.runner),
                                     args={"customer_id": "C-7", "amount_usd": 5000})
        resumer = InlineResume(s.runner)
        await s.approvals.decide(BOB, approval, "edit", resumer,
                                 args={"customer_id": "C-7", "amount_usd": 250.0})
        assert resumer.result is not None and resumer.result.status == "success"
        s.switch.change("default", "root", "default", {"disabled_tools": ["add_credit"]})
        again = await s.runner.start(TASK, "desk", created_by="alice")
        results = [e["data"] for e in s.store.events(again.run_id) if e["type"] == "tool_result"]
    assert run.status == "interrupted" and value["policy_rule"] == "credits-over-100"
    assert value["action_request"]["action"] == "add_credit"
    assert credits(folder) == [("C-7", 250.0)]  # the approved edit, once
    assert again.status == "error" and results  # the credit was refused: not done
    assert all(not r["ok"] and "disabled" in str(r) for r in results)


def test_packs_bad_tool_config_names_file_key_and_reason(tmp_path: Path) -> None:
    folder = tmp_path / "desk"
    config = project(folder)
    data = yaml.safe_load(config.read_text())

    def fails(change: dict[str, Any], match: str) -> None:
        config.write_text(yaml.safe_dump({**data, **change}, sort_keys=False))
        with pytest.raises(ConfigError, match=match):
            load_settings(config)

    team = data["teams"]["desk"]
    agent = team["agents"][0]
    fails({"teams": {"desk": {**team, "agents": [{**agent, "tools": ["crm.get_customer"]}]}}},
          r"teams\.desk\.agents\.0\.tools: unknown MCP server 'crm'")
    fails({"teams": {"desk": {**team, "agents": [{**agent, "tools": ["zap_*"]}]}}},
          r"teams\.desk\.agents\.0\.tools: glob 'zap_\*' matches no tool")
    fails({"tools": {"packs": ["demo", "desk_tools", {"name": "tools.demo"}]}},
          r"tools\.packs\.2: two tools named 'lookup_customer'")
    fails({"tools": {"packs": ["no_such_pack_here"]}}, r"tools\.packs\.0: cannot load pack")
    packs = data["tools"]["packs"]
    fails({"tools": {"packs": packs, "mcp": [{"name": "crm", "command": ["no-such-binary-x"]}]}},
          r"tools\.mcp\.0\.command: 'no-such-binary-x' not found")
    fails({"tools": {"packs": packs, "mcp": [{"name": "crm", "url": "http://127.0.0.1:9/mcp",
                              "command": ["python"]}]}},
          r"tools\.mcp\.0: Value error, give exactly one of command")
    fails({"offline": {"playbooks": ["missing/"]}}, r"offline\.playbooks\.0: 'missing/' not found")
