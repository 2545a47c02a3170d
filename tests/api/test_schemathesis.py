"""Schemathesis over /openapi.json (examples, coverage, fuzzing and stateful sequences over
the links it infers from the schema; bounded in examples and time): no 5xx, and every
response matches the documented schema."""

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
             "--checks", "not_a_server_error,response_schema_conformance",
             "--max-examples", str(MAX_EXAMPLES),
             "--phases", "examples,coverage,fuzzing,stateful", "--generation-deterministic",
             "--request-timeout", "15", "--no-color"],
            capture_output=True, text=True, timeout=TIME_LIMIT_S, check=False)
    finally:
        server.stop()
    summary = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    links = re.search(r"API Links: +(\d+) covered / (\d+) selected", result.stdout)
    scenarios = re.search(r"Stateful \(in [^)]*\)\s+Scenarios: +(\d+)", result.stdout)

    assert result.returncode == 0, result.stdout[-4000:]
    assert summary is not None, result.stdout[-2000:]
    assert links is not None and scenarios is not None, result.stdout[-3000:]
    generated, passed = map(int, summary.groups())
    covered, selected = map(int, links.groups())
    with capsys.disabled():
        print(f"\nschemathesis: {generated} requests, {passed} without a server error or a "
              f"response off the schema; stateful: {scenarios.group(1)} scenarios, "
              f"{covered}/{selected} inferred links followed")
    record("schemathesis over /openapi.json", generated, generated - passed,
           "no input produces a 5xx and every response matches the documented schema "
           "(examples, coverage, fuzzing; stateful sequences: "
           f"{scenarios.group(1)} scenarios over {covered} of {selected} links inferred from "
           "the schema)")
    assert generated == passed and generated > MIN_REQUESTS
