"""The `foreman` command as a user meets it: exit codes and output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOREMAN = str(Path(sys.executable).parent / "foreman")


def run(*args: str, data: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FOREMAN_DATA_DIR": str(data), "FOREMAN_OFFLINE": "1",
           "FOREMAN_CONFIG": str(config or ROOT / "foreman.yaml")}
    return subprocess.run([FOREMAN, *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("teams: [not, a, mapping]\n")
    out = run("run", "hello", data=tmp_path, config=bad)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "bad.yaml" in out.stderr and "teams" in out.stderr


def test_cli_run_needs_task_or_resume(tmp_path: Path) -> None:
    out = run("run", data=tmp_path)
    assert out.returncode == 2


def test_cli_run_demo_prints_progress_and_changes_the_sandbox(tmp_path: Path) -> None:
    out = run("run", "Customer C-1002 asks where order O-5003 is; reply with its shipping "
              "status", data=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Offline mode" in out.stdout
    assert "Plan" in out.stdout and "Round 1" in out.stdout
    assert "tool send_email" in out.stdout
    assert "Final answer" in out.stdout and "in transit" in out.stdout
    shown = run("sandbox", "show", "outbox", data=tmp_path)
    assert '"customer_id": "C-1002"' in shown.stdout
    assert run("sandbox", "reset", data=tmp_path).returncode == 0
    assert run("sandbox", "show", "outbox", data=tmp_path).stdout == ""


def test_cli_unknown_team_exits_2(tmp_path: Path) -> None:
    out = run("run", "hello", "--team", "legal", data=tmp_path)
    assert out.returncode == 2
    assert "no team named 'legal'" in out.stdout + out.stderr


def test_cli_resume_of_unknown_thread_exits_2(tmp_path: Path) -> None:
    out = run("run", "--resume", "t-nope", data=tmp_path)
    assert out.returncode == 2


def test_cli_run_that_does_not_do_its_task_exits_1(tmp_path: Path) -> None:
    out = run("run", "Translate our FAQ into French", data=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Not done (blocked)" in out.stdout
    assert "Nothing was done" in out.stdout


def test_cli_sandbox_commands_follow_the_demo_packs_database(tmp_path: Path,
                                                             pg_url: str) -> None:
    """With a database URL the sandbox's tables live there; `sandbox` reads and resets
    them, and prints the URL without its password."""
    from tools import sandbox

    env = {**os.environ, "FOREMAN_DATA_DIR": str(tmp_path), "FOREMAN_OFFLINE": "1",
           "FOREMAN_CONFIG": str(ROOT / "foreman.yaml"), "FOREMAN_DATABASE_URL": pg_url}
    sandbox.reset(pg_url)
    conn = sandbox.connect(pg_url)
    conn.execute("DELETE FROM runbooks WHERE id = 'RB-1'")
    conn.commit()
    conn.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FOREMAN, "sandbox", *args], env=env, capture_output=True,
                              text=True, timeout=120, cwd=ROOT)

    shown = cli("show", "runbooks")
    assert shown.returncode == 0, shown.stderr
    assert [line for line in shown.stdout.splitlines() if '"RB-1"' in line] == []
    assert not (tmp_path / "sandbox.db").exists()
    reset = cli("reset")
    assert reset.returncode == 0, reset.stderr
    assert '"RB-1"' in cli("show", "runbooks").stdout
