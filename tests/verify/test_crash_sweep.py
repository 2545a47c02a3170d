"""Kill Foreman at the n-th pass of every durable write and node boundary, restart, finish.

Embedded mode, as `foreman serve` runs it, on SQLite and on PostgreSQL (app tables and
checkpoints in a schema of the world's own): each point is a fresh world (data dir,
sandbox) where a driver process starts the task and is SIGKILLed by ``app.crashpoints``
at ``(site, n)``; a second process starts the way the server does (expiry sweep, recovery)
and drives the run to its end, approving what it asks. The result must equal an
uninterrupted run of the task: the same side-effect rows (no duplicate, none lost), the
same provider calls and cost (no model call paid twice), no tool call left open or for a
human, an audit chain that verifies with every audited event in it, and a run that ends.

The points come from a first, counting run of each task. `make test` sweeps a few points
per task; `make verify` (``FOREMAN_VERIFY_SCALE=full``) sweeps at least 200 on SQLite and 48
on PostgreSQL. Distributed mode (a killed ``foreman worker``) is not swept here.
"""

from __future__ import annotations

import json
import os
import queue
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.crashpoints import SITES
from tests.app.tooling.crm import Crm
from tests.conftest import PG_URL
from tests.verify.crash_sweep import (
    Forker,
    Outcome,
    PointResult,
    count_passes,
    make_crm_project,
    make_world,
    sweep_point,
)
from tests.verify.crash_tasks import TASKS
from tests.verify.record import record, scale

PARALLEL = 2  # driver processes at a time: the machine's two cores are shared
# Sites tried first when a task gets only a few points: the ones between a side effect and
# its record, and between a decision and its application.
PRIORITY = ("approval.settle", "tool.applied", "mcp.answered", "run.status", "tool.started",
            "mcp.call", "approval.create", "model.journal", "checkpoint.put", "tool.done",
            "event.append", "checkpoint.writes", "audit.append")
assert sorted(PRIORITY) == sorted(SITES)


def select(passes: dict[str, int], quota: int) -> list[tuple[str, int]]:
    """``quota`` distinct points of one task: sites in priority order, round after round,
    each round taking the pass furthest from those already taken (middle, first, last...)."""
    taken: dict[str, list[int]] = {s: [] for s in PRIORITY if passes.get(s)}
    points: list[tuple[str, int]] = []
    total = sum(passes[s] for s in taken)
    while len(points) < min(quota, total):
        for site in taken:
            if len(points) >= quota:
                break
            have, count = taken[site], passes[site]
            if len(have) == count:
                continue
            free = [n for n in range(1, count + 1) if n not in have]
            n = (max(free, key=lambda k: (min(abs(k - h) for h in have), -k)) if have
                 else (count + 1) // 2)
            have.append(n)
            points.append((site, n))
    return points


@contextmanager
def borrow(pool: queue.Queue[Forker]) -> Iterator[Forker]:
    """A fork server for one driver process at a time."""
    forker = pool.get()
    try:
        yield forker
    finally:
        pool.put(forker)


@pytest.fixture(scope="module")
def forkers() -> Iterator[queue.Queue[Forker]]:
    pool: queue.Queue[Forker] = queue.Queue()
    started = [Forker() for _ in range(PARALLEL)]
    for f in started:
        pool.put(f)
    yield pool
    for f in started:
        f.close()


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crm]:
    server = Crm(tmp_path_factory.mktemp("crm") / "crm.db").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def schemas() -> Iterator[Callable[[], str]]:
    """Fresh PostgreSQL schemas, one a world, dropped after the sweep."""
    made: list[str] = []
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL at {PG_URL} is required for this sweep: {e}")

    def fresh() -> str:
        schema = f"sweep_{uuid.uuid4().hex[:12]}"
        conn.execute(f"CREATE SCHEMA {schema}")
        made.append(schema)
        return f"{PG_URL}?options=-csearch_path%3D{schema}"

    try:
        yield fresh
    finally:
        for schema in made:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


def sweep(forkers: queue.Queue[Forker], crm: Crm, home: Path, quota: int,
          database: Callable[[], str | None]) -> tuple[list[PointResult], dict[str, Any]]:
    """Count each task's passes, then sweep its chosen points; every point's result."""
    project = make_crm_project(home / "desk", crm)

    def baseline(t: str) -> tuple[dict[str, int], Outcome]:
        world = make_world(TASKS[t], home / f"{t}-baseline", crm, project, database())
        with borrow(forkers) as forker:
            return count_passes(forker, world)

    def one(point: tuple[str, str, int]) -> PointResult:
        t, site, n = point
        world = make_world(TASKS[t], home / f"{t}-{site}-{n}", crm, project, database())
        with borrow(forkers) as forker:
            return sweep_point(forker, world, site, n, baselines[t][1])

    with ThreadPoolExecutor(PARALLEL) as pool:
        baselines = dict(zip(TASKS, pool.map(baseline, TASKS), strict=True))
        plan: list[tuple[str, str, int]] = []
        for t, (passes, want) in baselines.items():
            assert want.status == ("success", "satisfied"), (t, want.status)
            assert any(want.effects), f"{t}: the uninterrupted run changed nothing"
            plan.extend((t, site, n) for site, n in select(passes, quota))
        results = list(pool.map(one, plan))
    assert len(results) == len(plan)
    return results, {t: b[0] for t, b in baselines.items()}


def report(name: str, results: list[PointResult], passes: dict[str, Any],
           seconds: float) -> None:
    """Print, log and record one sweep's figures; fail on any point that did not hold."""
    failed = [r for r in results if r.problems]
    # Every point is a pass the counting run saw: a point not reached means the armed run
    # took another path, which the sweep must not skip silently.
    unreached = [r for r in results if not r.killed and not r.problems]
    target = os.environ.get("FOREMAN_CRASH_SWEEP_LOG")
    if target:  # every point's outcome, for a closer look
        with Path(target).open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps({"sweep": name, **json.loads(r.as_json())}) + "\n"
                            for r in results))
    by_site = Counter(r.site for r in results)
    print(f"{name}: {len(results)} points over {len(TASKS)} tasks in {seconds:.0f}s; killed "
          f"{len(results) - len(unreached)}, not reached {len(unreached)}, failed "
          f"{len(failed)}; passes per site: {json.dumps(passes, sort_keys=True)}")
    sites = ", ".join(f"{s} ({by_site[s]})" for s in sorted(by_site))
    record(name, len(results), len(failed) + len(unreached),
           "a SIGKILL at the n-th pass of a durable write, then a restart: the same side "
           "effects and provider calls as an uninterrupted run (no duplicate, none lost, no "
           "call paid twice), no tool call left open, the audit chain verifies, the run "
           "ends; 4 tasks (refund and scale-out "
           f"with approval, lookup and reply, an MCP credit), points per site: {sites}")
    assert not failed, "\n".join(f"{r.task} {r.site}:{r.n}: {r.problems}" for r in failed)
    assert not unreached, [f"{r.task} {r.site}:{r.n}" for r in unreached]


def test_crash_sweep_on_sqlite_every_point_resumes_to_the_uninterrupted_outcome(
        forkers: queue.Queue[Forker], crm: Crm, tmp_path: Path) -> None:
    began = time.monotonic()
    results, passes = sweep(forkers, crm, tmp_path, scale(fast=3, full=56), lambda: None)
    report("crash sweep (embedded, SQLite)", results, passes, time.monotonic() - began)
    assert len(results) >= scale(fast=12, full=200)


def test_crash_sweep_on_postgres_every_point_resumes_to_the_uninterrupted_outcome(
        forkers: queue.Queue[Forker], crm: Crm, schemas: Callable[[], str],
        tmp_path: Path) -> None:
    began = time.monotonic()
    results, passes = sweep(forkers, crm, tmp_path, scale(fast=1, full=12), schemas)
    report("crash sweep (embedded, PostgreSQL)", results, passes, time.monotonic() - began)
    assert len(results) >= scale(fast=4, full=48)
