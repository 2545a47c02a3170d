"""``foreman init`` and ``foreman tools list`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from app.cli.main import app


def test_tools_cli_init_demo_project_lists_its_tools_as_json(tmp_path: Path) -> None:
    cli = CliRunner()
    made = cli.invoke(app, ["init", str(tmp_path / "p")])
    assert made.exit_code == 0, made.output
    assert {p.name for p in (tmp_path / "p").iterdir()} >= {
        "foreman.yaml", "README.md", "prompts", "playbooks", "scenarios"}
    again = cli.invoke(app, ["init", str(tmp_path / "p")])
    assert again.exit_code == 2 and "already exists" in again.output

    listed = cli.invoke(app, ["tools", "list", "--team", "desk", "--json", "--config",
                              str(tmp_path / "p" / "foreman.yaml")])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.output)["tools"]}
    assert set(rows) == {"lookup_order", "issue_refund"}
    refund = rows["issue_refund"]
    assert (refund["source"], refund["side_effect"], refund["risk"]) == (
        "pack:demo", "write", "high")
    assert refund["agents"] == ["desk.clerk"]
    assert refund["policy_rules"] == ["refunds-over-1000-denied", "refunds-over-500",
                                      "refunds-over-50"]


def test_tools_cli_unknown_server_and_team_exit_2_with_file_and_key(tmp_path: Path) -> None:
    cli = CliRunner()
    assert cli.invoke(app, ["init", str(tmp_path / "p"), "--template", "blank"]).exit_code == 0
    config = tmp_path / "p" / "foreman.yaml"
    data = yaml.safe_load(config.read_text())
    data["teams"]["desk"]["agents"][0]["tools"] = ["tickets.*"]
    config.write_text(yaml.safe_dump(data))

    bad = cli.invoke(app, ["tools", "list", "--config", str(config)])
    assert bad.exit_code == 2
    assert (f"{config}: teams.desk.agents.0.tools: unknown MCP server 'tickets'"
            in bad.output.replace("\n", ""))
    nope = cli.invoke(app, ["init", str(tmp_path / "q"), "--template", "fancy"])
    assert nope.exit_code == 2 and "demo or blank" in nope.output


def test_tools_cli_lists_a_down_server_and_the_tools_named_on_it(tmp_path: Path) -> None:
    cli = CliRunner()
    assert cli.invoke(app, ["init", str(tmp_path / "p"), "--template", "blank"]).exit_code == 0
    config = tmp_path / "p" / "foreman.yaml"
    data = yaml.safe_load(config.read_text())
    data["tools"]["mcp"] = [{"name": "crm", "url": "http://127.0.0.1:9/mcp",
                             "connect_timeout_s": 5}]
    data["teams"]["desk"]["agents"][0]["tools"] = ["crm.get_customer", "crm.*"]
    data["policy"]["rules"] = []
    config.write_text(yaml.safe_dump(data))

    listed = cli.invoke(app, ["tools", "list", "--json", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    out = json.loads(listed.output)
    [server] = out["servers"]
    assert (server["name"], server["status"], server["tools"]) == ("crm", "down", 0)
    assert server["error"]  # why it is down
    rows = {r["name"]: r for r in out["tools"]}
    assert set(rows) == {"search_knowledge", "crm.get_customer"}  # the glob matches nothing yet
    waiting = rows["crm.get_customer"]
    assert (waiting["source"], waiting["side_effect"], waiting["risk"], waiting["agents"]) == (
        "mcp:crm", "unknown", "unknown", ["desk.agent"])
