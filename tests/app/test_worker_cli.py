"""``foreman worker`` and ``foreman serve --workers``: bad usage exits 2 with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOREMAN = str(Path(sys.executable).parent / "foreman")


def run(*args: str, data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "FOREMAN_DATABASE_URL"}
    return subprocess.run([FOREMAN, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**base, "FOREMAN_DATA_DIR": str(data),
                                         "FOREMAN_OFFLINE": "1", **env})


def test_worker_cli_without_a_database_exits_2_saying_why(tmp_path: Path) -> None:
    out = run("worker", data=tmp_path)
    assert out.returncode == 2
    assert "FOREMAN_DATABASE_URL" in out.stderr and out.stderr.strip().count("\n") == 0


def test_worker_cli_serve_without_workers_needs_a_database(tmp_path: Path) -> None:
    out = run("serve", "--workers", "0", data=tmp_path)
    assert out.returncode == 2 and "FOREMAN_DATABASE_URL" in out.stderr


def test_worker_cli_unreachable_database_exits_1_naming_it(tmp_path: Path) -> None:
    out = run("worker", data=tmp_path,
              FOREMAN_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert out.returncode == 1
    assert "127.0.0.1:1" in out.stderr and "Traceback" not in out.stderr


def _niceness_of_a_started_worker(tmp_path: Path, pg_url: str, *args: str) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if k != "FOREMAN_DATABASE_URL"}
    proc = subprocess.Popen(
        [FOREMAN, "worker", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**base, "FOREMAN_DATA_DIR": str(tmp_path), "FOREMAN_OFFLINE": "1",
                        "FOREMAN_DATABASE_URL": pg_url})
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # printed once the priority is set
        stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(stat[16]), banner  # field 19 of stat: the niceness
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def test_worker_cli_runs_below_the_apis_priority_unless_told(tmp_path: Path,
                                                             pg_url: str) -> None:
    here = os.getpriority(os.PRIO_PROCESS, 0)  # a worker never raises its priority above it
    niceness, banner = _niceness_of_a_started_worker(tmp_path / "a", pg_url)
    assert niceness == max(10, here) and f"nice {niceness}" in banner
    niceness, banner = _niceness_of_a_started_worker(tmp_path / "b", pg_url, "--nice", "0")
    assert niceness == here and f"nice {here}" in banner
    out = run("worker", "--nice", "20", data=tmp_path / "c")
    assert out.returncode == 2 and "--nice" in out.stderr
