"""Schemathesis over /openapi.json (coverage + fuzzing, bounded in examples and time): no 5xx."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import Server
from tests.verify.record import record, scale

# `make test` runs a slice; `make verify` (FOREMAN_VERIFY_SCALE=full) sends > 10,000 requests.
MAX_EXAMPLES = scale(fast=8, full=160)
TIME_LIMIT_S = scale(fast=150, full=1200)
MIN_REQUESTS = scale(fast=500, full=10_000)


def test_schemathesis_finds_no_server_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    server = Server(tmp_path, {"FOREMAN_TEST_GATE": "refund"}).start()  # own: may flip switches
    try:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "st"), "run", server.url + "/openapi.json",
             "--checks", "not_a_server_error", "--max-examples", str(MAX_EXAMPLES),
             "--phases", "examples,coverage,fuzzing", "--generation-deterministic",
             "--request-timeout", "15", "--no-color"],
            capture_output=True, text=True, timeout=TIME_LIMIT_S, check=False)
    finally:
        server.stop()
    summary = re.search(r"(\d+) generated, (\d+) passed", result.stdout)

    assert result.returncode == 0, result.stdout[-4000:]
    assert summary is not None, result.stdout[-2000:]
    generated, passed = map(int, summary.groups())
    with capsys.disabled():
        print(f"\nschemathesis: {generated} requests, {passed} without a server error")
    record("schemathesis over /openapi.json", generated, generated - passed,
           "no input produces a 5xx (examples, coverage and fuzzing phases)")
    assert generated == passed and generated > MIN_REQUESTS
