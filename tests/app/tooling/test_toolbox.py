"""The toolbox adopts MCP connections started before it (``foreman serve`` spawns its stdio
servers before importing the rest of itself) and keeps the registry in step with them."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from app.config.settings import load_settings
from app.project.init import init_project
from app.tooling.toolbox import open_toolbox, start_connections
from tests.app.tooling.crm import SERVER, until


async def test_toolbox_adopts_connections_started_early_without_a_second_spawn(
        tmp_path: Path) -> None:
    init_project(tmp_path / "p", "blank")
    config = tmp_path / "p" / "foreman.yaml"
    data = yaml.safe_load(config.read_text())
    pid_file = tmp_path / "crm.pid"
    data["tools"]["mcp"] = [{
        "name": "crm", "command": [sys.executable, str(SERVER), "stdio"],
        "env": {"CRM_DB": "${FOREMAN_DATA_DIR}/crm.db", "CRM_PID_FILE": str(pid_file)},
        "connect_timeout_s": 30}]
    data["teams"]["desk"]["agents"][0]["tools"] = ["crm.*"]
    data["policy"]["rules"] = []
    config.write_text(yaml.safe_dump(data))
    settings = load_settings(config)

    early = start_connections(settings)  # no await: the process spawns in the background
    await until(lambda: early[0].status == "connected", "the early connection", within_s=60)
    first_pid = pid_file.read_text()
    box = await open_toolbox(settings, early)
    try:
        names = sorted(n for n in box.registry.names() if n.startswith("crm."))
        attempts = early[0].attempts
    finally:
        await box.aclose()

    assert box.connections is early and attempts == 1
    assert pid_file.read_text() == first_pid  # adopted, not spawned again
    assert names == ["crm.add_credit", "crm.big_report", "crm.find_credit", "crm.get_customer"]
    # ${FOREMAN_DATA_DIR} is the project's data folder: the server's database went there.
    assert (settings.data_dir / "crm.db").is_file()
    assert early[0].status == "closed"
