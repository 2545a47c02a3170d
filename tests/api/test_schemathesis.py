"""Schemathesis over /openapi.json against a real server with API keys in two tenants.

Each tenant's admin key fuzzes the whole API (examples, coverage, fuzzing and stateful
sequences over the links the schema declares and those schemathesis infers): no 5xx, and
every response matches the documented schema. Then each tenant probes the other's threads, runs and
approvals (tests/verify/tenant_probes.py): the answer must be that of an unused id, the
listings must not name them, and nothing of the owner's may change. Requests are counted
from the HAR log schemathesis writes of what it actually sent, plus the probes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import SUPPORT_REFUND, SUPPORT_WHERE, Server, key, keyed_env
from tests.verify.record import record, scale
from tests.verify.tenant_probes import Probes, leaks_in_har, owned, probe

# `make test` runs a slice (well under a minute); `make verify` (FOREMAN_VERIFY_SCALE=full)
# sends more than 10,000 requests. Examples are per operation and per tenant.
MAX_EXAMPLES = scale(fast=2, full=110)
TIME_LIMIT_S = scale(fast=120, full=900)
MIN_REQUESTS = scale(fast=300, full=10_000)
PROBES_PER_OPERATION = scale(fast=2, full=20)
OWNED_THREADS = scale(fast=20, full=200)
# The coverage phase sends ~1,400 requests whatever the examples; the slice leaves it out.
PHASES = "examples,coverage,fuzzing,stateful" if scale(fast=0, full=1) else (
    "examples,fuzzing,stateful")
# The admin of each tenant: every tenant route is open to it, so the fuzzer gets past RBAC.
TENANTS = {"acme": "root", "globex": "gus"}
# A seed per tenant: the same seed would send both the very same inputs.
SEEDS = {"acme": 1017, "globex": 2017}


@dataclass
class Fuzzed:
    """One schemathesis run: what it sent and what it found."""

    tenant: str
    requests: int
    server_errors: int
    failures: int
    scenarios: int
    links: tuple[int, int]
    har: dict[str, Any]
    output: str


def seed(server: Server, who: str) -> None:
    """A thread with a run paused on a refund approval, and one with a finished run."""
    with server.client(who) as c:
        for task in (SUPPORT_REFUND, SUPPORT_WHERE):
            thread = c.post("/threads", json={}).raise_for_status().json()["thread_id"]
            c.post(f"/threads/{thread}/runs/wait", json={
                "assistant_id": "support",
                "input": {"messages": [{"role": "user", "content": task}]}}).raise_for_status()
        assert c.get("/v1/approvals?status=pending").json(), "the refund asked no approval"


def fuzz(server: Server, tenant: str, who: str, out: Path) -> Fuzzed:
    har_path = out / f"{tenant}.har"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "st"), "run", server.url + "/openapi.json",
         "-H", f"Authorization: Bearer {key(who)}",
         "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", str(MAX_EXAMPLES),
         "--phases", PHASES, "--seed", str(SEEDS[tenant]),
         "--request-timeout", "15", "--no-color",
         "--report", "har", "--report-har-path", str(har_path)],
        capture_output=True, text=True, timeout=TIME_LIMIT_S, check=False)
    (out / f"{tenant}.out").write_text(result.stdout)
    links = re.search(r"API Links: +(\d+) covered / (\d+) selected", result.stdout)
    scenarios = re.search(r"Stateful \(in [^)]*\)\s+Scenarios: +(\d+)", result.stdout)
    assert links is not None and scenarios is not None, result.stdout[-3000:]
    har = json.loads(har_path.read_text())
    entries = har["log"]["entries"]
    # Each failing operation is reported once under its check's name.
    failures = len(re.findall(r"^_+ [A-Z]+ /\S* _+$", result.stdout, re.MULTILINE))
    if result.returncode != 0 and failures == 0:
        failures = 1  # a failure this parser does not know still fails the sweep
    return Fuzzed(tenant, len(entries), sum(e["response"]["status"] >= 500 for e in entries),
                  failures, int(scenarios.group(1)), (int(links.group(1)),
                                                      int(links.group(2))), har, result.stdout)


def test_schemathesis_two_tenants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    # Its own server: the fuzzer may flip the kill switches.
    server = Server(tmp_path, {"FOREMAN_TEST_GATE": "refund", **keyed_env()}).start()
    try:
        for who in TENANTS.values():
            seed(server, who)
        schema = httpx.get(server.url + "/openapi.json").raise_for_status().json()
        runs = [fuzz(server, tenant, who, tmp_path) for tenant, who in TENANTS.items()]
        (a, who_a), (b, who_b) = TENANTS.items()
        with server.client(who_a) as ca, server.client(who_b) as cb:
            listed = {a: owned(ca, OWNED_THREADS), b: owned(cb, OWNED_THREADS)}
            mine = {a: listed[a].without(listed[b]), b: listed[b].without(listed[a])}
            probes = [probe(ca, cb, schema, mine[a], PROBES_PER_OPERATION),
                      probe(cb, ca, schema, mine[b], PROBES_PER_OPERATION)]
    finally:
        server.stop()
    scanned = Probes()
    for run, other in ((runs[0], b), (runs[1], a)):
        _, found = leaks_in_har(run.har, mine[other].names())
        scanned.failures += found
    requests = sum(r.requests for r in runs) + sum(p.requests for p in probes)
    isolation = [f for p in (*probes, scanned) for f in p.failures]
    broken = sum(r.failures for r in runs)
    server_errors = sum(r.server_errors for r in runs)
    wall = time.monotonic() - started
    scenarios = sum(r.scenarios for r in runs)
    covered, selected = runs[0].links
    with capsys.disabled():
        print(f"\nschemathesis: {requests} requests sent in {wall:.0f} s "
              f"({', '.join(f'{r.tenant}: {r.requests}' for r in runs)}, cross-tenant probes: "
              f"{sum(p.requests for p in probes)}); {server_errors} server errors, {broken} "
              f"operations off the schema, {len(isolation)} isolation failures; stateful: "
              f"{scenarios} scenarios, {covered}/{selected} links followed")
    # Too few requests sent fails the part in the table too, not only the assertion below.
    short = int(requests <= MIN_REQUESTS)
    record("schemathesis, two tenants", requests,
           server_errors + broken + len(isolation) + short,
           "no input produces a 5xx and every response matches the documented schema "
           "(examples, coverage, fuzzing and stateful sequences: "
           f"{scenarios} scenarios over {covered} of the schema's {selected} links, declared "
           "and inferred), fuzzed with the keys of two tenants; each tenant's threads, runs and "
           "approvals used by the other answer as an unused id, are in none of its listings "
           "or fuzzed responses, and stay unchanged", wall_s=wall)
    for r in runs:
        assert r.failures == 0 and r.server_errors == 0, r.output[-6000:]
    assert not isolation, isolation[:10]
    assert all(mine[t].approvals for t in TENANTS), "a tenant's seeded approval is missing"
    assert requests > MIN_REQUESTS
