"""The crash hook's guards: inert unless armed twice, a bad plan refused, the kill exact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.errors import ConfigError
from app.runs import crashpoints

ROOT = Path(__file__).resolve().parents[2]


def test_a_crash_plan_without_the_testing_guard_is_ignored() -> None:
    assert crashpoints._plan({"FOREMAN_CRASH_AT": "tool.applied:1"}) is None
    assert crashpoints._plan({"FOREMAN_CRASH_AT": "tool.applied:1",
                              "FOREMAN_TESTING": "true"}) is None
    assert crashpoints._plan({"FOREMAN_TESTING": "1"}) is None
    # This test process was started without a plan: every pass is a no-op.
    assert crashpoints._armed is None
    crashpoints.hit("tool.applied")


@pytest.mark.parametrize("value", ["tool.applied", "tool.applied:0", "nowhere:1",
                                   "tool.applied:x"])
def test_a_malformed_plan_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="FOREMAN_CRASH_AT"):
        crashpoints._plan({"FOREMAN_TESTING": "1", "FOREMAN_CRASH_AT": value})


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FOREMAN_")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env,
                          "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=60)


PASSES = ("from app.runs import crashpoints\n"
          "for i in range(5):\n"
          "    crashpoints.hit('tool.started')\n"
          "    crashpoints.hit('tool.applied')\n"
          "    print(i, flush=True)\n")


def test_the_process_dies_by_sigkill_at_exactly_the_nth_pass() -> None:
    done = run(PASSES, FOREMAN_TESTING="1", FOREMAN_CRASH_AT="tool.applied:3")
    assert done.returncode == -9
    assert done.stdout.split() == ["0", "1"]  # the third pass of tool.applied never printed


def test_without_the_guard_the_same_plan_runs_to_the_end() -> None:
    done = run(PASSES, FOREMAN_CRASH_AT="tool.applied:3")
    assert done.returncode == 0
    assert done.stdout.split() == ["0", "1", "2", "3", "4"]


def test_count_mode_records_every_pass_in_order(tmp_path: Path) -> None:
    log = tmp_path / "passes.log"
    done = run(PASSES, FOREMAN_TESTING="1", FOREMAN_CRASH_COUNT=str(log))
    assert done.returncode == 0
    assert log.read_text().split() == ["tool.started", "tool.applied"] * 5
