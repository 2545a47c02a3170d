"""Kill a real `foreman run` process with SIGKILL mid-run, then finish it with --resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import config_without_policy

ROOT = Path(__file__).resolve().parents[2]
FOREMAN = str(Path(sys.executable).parent / "foreman")
TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


def query(db: Path, sql: str) -> list[Any]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # tables not created yet
    finally:
        conn.close()


def test_resume_after_sigkill_repeats_no_model_call_and_no_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "FOREMAN_DATA_DIR": str(data), "FOREMAN_OFFLINE": "1",
           "FOREMAN_CONFIG": str(config_without_policy(tmp_path)),
           "FOREMAN_SCRIPTED_LATENCY_MS": "60"}
    app_db, sandbox = data / "foreman.db", data / "sandbox.db"
    first = subprocess.Popen([FOREMAN, "run", "--quiet", TASK], env=env, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    # Kill right after the refund was written: the run is mid-way (email, ticket, verify,
    # final answer still to come).
    while time.monotonic() < deadline and first.poll() is None:
        if query(app_db, "SELECT 1 FROM events WHERE type='tool_result' AND "
                         "data LIKE '%\"issue_refund\"%'"):
            break
        time.sleep(0.02)
    assert first.poll() is None, "the run finished before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    calls_before = query(app_db, "SELECT COUNT(*) FROM model_calls")[0][0]
    (thread_id,) = query(app_db, "SELECT thread_id FROM runs")[0]
    assert query(sandbox, "SELECT COUNT(*) FROM refunds")[0][0] == 1
    assert query(app_db, "SELECT status FROM runs")[0][0] == "running"

    second = subprocess.run([FOREMAN, "run", "--quiet", "--resume", thread_id], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr

    calls_after = query(app_db, "SELECT COUNT(*) FROM model_calls")[0][0]
    provider_calls = query(app_db, "SELECT COUNT(*) FROM events WHERE type='model_call'")[0][0]
    # Every provider call produced exactly one journal row: nothing was asked twice.
    assert provider_calls == calls_after
    assert calls_after > calls_before
    assert query(sandbox, "SELECT order_id, amount_usd FROM refunds") == [("O-5002", 189.0)]
    assert query(sandbox, "SELECT customer_id FROM outbox") == [("C-1001",)]
    assert query(sandbox, "SELECT status FROM tickets WHERE id='T-9001'") == [("closed",)]
    assert query(app_db, "SELECT status, stop_reason FROM runs") == [("success", "satisfied")]
    assert "189" in second.stdout
    print(f"model calls before kill: {calls_before}, after resume: {calls_after}, "
          f"made by the resumed process: {calls_after - calls_before}")
