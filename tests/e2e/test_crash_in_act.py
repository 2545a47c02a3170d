"""SIGKILL inside the approved side-effecting node, after STARTED: resuming reconciles the
write by its idempotency key instead of refunding twice."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from app.services import open_services
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


async def test_kill_during_act_after_started_never_duplicates_the_refund(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "FOREMAN_DATA_DIR": str(data), "FOREMAN_OFFLINE": "1",
           "FOREMAN_CONFIG": str(ROOT / "foreman.yaml"), "PYTHONPATH": str(ROOT),
           "FOREMAN_KNOWLEDGE__INGEST_BUNDLED": "false"}
    crashed = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(ROOT / "tests/e2e/crash_in_act.py")], env=env,
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    thread_id = crashed.stdout.split()[0]
    app_db = sqlite3.connect(data / "foreman.db")
    ledger = app_db.execute("SELECT status FROM tool_calls WHERE tool = 'issue_refund'").fetchall()
    app_db.close()
    box = sqlite3.connect(data / "sandbox.db")
    assert box.execute("SELECT COUNT(*) FROM refunds").fetchone() == (1,)
    box.close()
    assert ledger == [("STARTED",)]

    settings = make_settings(data, with_policy=True)
    settings = settings.model_copy(update={"knowledge": settings.knowledge.model_copy(
        update={"ingest_bundled": False})})
    async with open_services(settings) as s:
        done = await s.runner.resume(thread_id)
        results = [e["data"] for e in s.store.events(done.run_id) if e["type"] == "tool_result"
                   and e["data"]["tool"] == "issue_refund"]

    assert done.status == "success" and done.stop_reason == "satisfied"
    assert results[-1]["result"]["reconciled"] is True
    box = sqlite3.connect(data / "sandbox.db")
    assert box.execute("SELECT order_id, amount_usd FROM refunds").fetchall() == [
        ("O-5002", 189.0)]
    box.close()
