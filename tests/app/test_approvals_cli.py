"""`foreman run --no-input`, `foreman approvals ...` and `foreman audit verify` on a local
data dir, through the same approvals service as the API."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOREMAN = str(Path(sys.executable).parent / "foreman")
TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


def cli(*args: str, data: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FOREMAN_DATA_DIR": str(data), "FOREMAN_OFFLINE": "1",
           "FOREMAN_CONFIG": str(ROOT / "foreman.yaml"),
           "FOREMAN_KNOWLEDGE__INGEST_BUNDLED": "false", "COLUMNS": "200"}
    return subprocess.run([FOREMAN, *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=ROOT, input=stdin)


def refunds(data: Path) -> list[tuple[str, float]]:
    conn = sqlite3.connect(data / "sandbox.db")
    try:
        return conn.execute("SELECT order_id, amount_usd FROM refunds").fetchall()
    finally:
        conn.close()


def test_cli_no_input_then_approvals_edit_and_audit_verify(tmp_path: Path) -> None:
    paused = cli("run", "--no-input", TASK, data=tmp_path)
    assert paused.returncode == 0, paused.stderr
    found = re.search(r"Waiting for approval ([0-9a-f]{20})", paused.stdout)
    assert found, paused.stdout
    approval = found.group(1)
    assert f"foreman approvals approve {approval}" in paused.stdout
    assert refunds(tmp_path) == []

    listed = cli("approvals", "list", "--status", "pending", data=tmp_path)
    assert approval in listed.stdout and "issue_refund" in listed.stdout
    shown = json.loads(cli("approvals", "show", approval, data=tmp_path).stdout)
    assert shown["rule"] == "refunds-over-50" and shown["context"]["plan"]["plan"]
    bad = cli("approvals", "edit", approval, "--args", '{"order_id": "O-5002"}', data=tmp_path)
    assert bad.returncode == 2 and "args.amount_usd" in bad.stderr

    edited = cli("approvals", "edit", approval, "--args",
                 '{"order_id": "O-5002", "amount_usd": 99.5, "reason": "partial"}',
                 data=tmp_path)
    assert edited.returncode == 0, edited.stderr
    assert "Final answer" in edited.stdout
    assert refunds(tmp_path) == [("O-5002", 99.5)]
    again = cli("approvals", "approve", approval, data=tmp_path)
    assert again.returncode == 1 and "already decided" in again.stderr

    verified = cli("audit", "verify", data=tmp_path)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True

    heads = json.loads(cli("audit", "head", data=tmp_path).stdout)
    anchor = tmp_path / "heads.json"
    anchor.write_text(json.dumps(heads))
    assert cli("audit", "verify", "--anchor", str(anchor), data=tmp_path).returncode == 0
    (tenant, head), = heads.items()
    anchor.write_text(json.dumps({tenant: {**head, "hash": "0" * 64}}))
    forged = cli("audit", "verify", "--anchor", str(anchor), data=tmp_path)
    assert forged.returncode == 1
    assert json.loads(forged.stdout)["first_bad_entry"] == head["seq"]
    anchor.write_text("not json")
    assert cli("audit", "verify", "--anchor", str(anchor), data=tmp_path).returncode == 2


def test_cli_run_asks_at_the_prompt_and_reject_is_recorded(tmp_path: Path) -> None:
    out = cli("run", TASK, data=tmp_path, stdin="reject\nwrong customer\n")
    assert out.returncode == 1, out.stderr  # the refund was not made: the run failed its task
    assert "Not done (blocked)" in out.stdout
    assert "Approval needed" in out.stdout and "wrong customer" in out.stdout
    assert refunds(tmp_path) == []
    decided = cli("approvals", "list", "--status", "decided", data=tmp_path)
    assert "decided" in decided.stdout and "issue_refund" in decided.stdout
