"""Kill Foreman at the n-th pass of every durable write and node boundary, restart, finish.

Embedded mode, as `foreman serve` runs it, on SQLite and on PostgreSQL (app tables and
checkpoints in a schema of the world's own): each point is a fresh world (data dir,
sandbox) where a driver process starts the task and is SIGKILLed by ``app.runs.crashpoints``
at ``(site, n)``; a second process starts the way the server does (expiry sweep, recovery)
and drives the run to its end, approving what it asks. The result must equal an
uninterrupted run of the task: the same side-effect rows (no duplicate, none lost), the
same provider calls and cost (no model call paid twice), no tool call left open or for a
human, an audit chain that verifies with every audited event in it, and a run that ends.

The points come from a first, counting run of each task. `make test` sweeps a few points
per task; `make verify` (``FOREMAN_VERIFY_SCALE=full``) sweeps at least 200 on SQLite and 48
on PostgreSQL.

Distributed mode (``crash_cluster``): an API replica and ``foreman worker`` processes on a
PostgreSQL schema of the point's own; a worker (or the API) is killed at ``(site, n)`` of
its counted passes, the next worker takes the stalled job over after the (small) stall
timeout and finishes; double-crash points kill the recovering worker too, at a pass of its
own recovery (sampled by seed from what the single-crash points' recovering workers
counted), and a third worker finishes. Same comparison, with the uninterrupted run on the
cluster (a model call in flight when its process was killed is asked again; any other call
sent twice is paid twice). `make verify` sweeps 48 single and 20 double points; `make test`
one worker point, one API point and one double point of the refund task.
"""

from __future__ import annotations

import json
import os
import queue
import random
import threading
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

from app.runs.crashpoints import SITES
from tests.app.tooling.crm import Crm
from tests.conftest import PG_URL
from tests.verify import crash_cluster
from tests.verify.crash_cluster import DistResult, Plan
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

PARALLEL = 2  # points at a time: the machine's two cores are shared
SEED = 17  # the double-crash pairs are sampled with it (the same pairs every run)
# Sites tried first when a task gets only a few points: the ones between a side effect and
# its record, and between a decision and its application.
PRIORITY = ("approval.settle", "tool.applied", "mcp.answered", "run.status", "tool.started",
            "mcp.call", "approval.create", "model.journal", "checkpoint.put", "tool.done",
            "event.append", "checkpoint.writes", "audit.append", "run.claim")
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


_pairing = threading.Lock()


@contextmanager
def borrow_pair(pool: queue.Queue[Forker]) -> Iterator[tuple[Forker, Forker]]:
    """Two fork servers for a distributed point (its API's and its workers'), taken
    together so that two points never hold one each and wait for the other."""
    with _pairing:
        pair = (pool.get(), pool.get())
    try:
        yield pair
    finally:
        for f in pair:
            pool.put(f)


@pytest.fixture(scope="module")
def forkers() -> Iterator[queue.Queue[Forker]]:
    pool: queue.Queue[Forker] = queue.Queue()
    started = [Forker() for _ in range(2 * PARALLEL)]
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
            points = select(passes, quota)
            # The last write of a task, whose ledger row is the run's last record of it:
            # a point the middle-first order reaches late (a repeat was found there).
            last = ("tool.applied", passes.get("tool.applied", 0))
            if last[1] and last not in points:
                points.append(last)
            plan.extend((t, site, n) for site, n in points)
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
           f"with approval, lookup and reply, an MCP credit), points per site: {sites}; "
           f"model calls in flight at the kill and asked again: {sum(r.resent for r in results)}")
    assert not failed, "\n".join(f"{r.task} {r.site}:{r.n}: {r.problems}" for r in failed)
    assert not unreached, [f"{r.task} {r.site}:{r.n}" for r in unreached]


def test_crash_sweep_on_sqlite_every_point_resumes_to_the_uninterrupted_outcome(
        forkers: queue.Queue[Forker], crm: Crm, tmp_path: Path) -> None:
    began = time.monotonic()
    results, passes = sweep(forkers, crm, tmp_path, scale(fast=1, full=40), lambda: None)
    report("crash sweep (embedded, SQLite)", results, passes, time.monotonic() - began)
    assert len(results) >= scale(fast=4, full=160)


def test_crash_sweep_on_postgres_every_point_resumes_to_the_uninterrupted_outcome(
        forkers: queue.Queue[Forker], crm: Crm, schemas: Callable[[], str],
        tmp_path: Path) -> None:
    began = time.monotonic()
    results, passes = sweep(forkers, crm, tmp_path, scale(fast=1, full=8), schemas)
    report("crash sweep (embedded, PostgreSQL)", results, passes, time.monotonic() - began)
    assert len(results) >= scale(fast=4, full=32)


DIST_TASKS = ("refund", "scale", "status", "crm")


def second_crashes(singles: list[DistResult], quota: int) -> list[tuple[str, str, str]]:
    """``quota`` double-crash points: single points sampled by seed (every task in turn),
    each with a pass of its recovering worker's own, sites taken in priority order."""
    rng = random.Random(SEED)
    by_task: dict[str, list[DistResult]] = {}
    for r in singles:
        if r.recovery and not r.problems and r.points[0].startswith("worker:"):
            by_task.setdefault(r.task, []).append(r)
    for results in by_task.values():
        rng.shuffle(results)
    pairs: list[tuple[str, str, str]] = []
    turn = 0
    while len(pairs) < quota and any(by_task.values()):
        for t in sorted(by_task):
            if not by_task[t] or len(pairs) >= quota:
                continue
            first = by_task[t].pop()
            sites = [s for s in PRIORITY if first.recovery.get(s)]
            site = sites[(turn + len(pairs)) % len(sites)]
            n = rng.randint(1, first.recovery[site])
            pairs.append((t, first.points[0].removeprefix("worker:"), f"{site}:{n}"))
        turn += 1
    return pairs


def test_crash_sweep_distributed_a_killed_worker_is_taken_over_to_the_same_outcome(
        forkers: queue.Queue[Forker], crm: Crm, schemas: Callable[[], str],
        tmp_path: Path) -> None:
    began = time.monotonic()
    project = make_crm_project(tmp_path / "desk", crm)
    tasks = DIST_TASKS if scale(fast=0, full=1) else ("refund",)

    def world(t: str, name: str) -> Any:
        return make_world(TASKS[t], tmp_path / f"{t}-{name}", crm, project, schemas())

    def base(t: str) -> tuple[crash_cluster.Run, Outcome]:
        with borrow_pair(forkers) as pair:
            return crash_cluster.baseline(world(t, "baseline"), pair)

    def one(point: tuple[str, Plan]) -> DistResult:
        t, plan = point
        name = "-".join(filter(None, [plan.api, *plan.workers])).replace(":", "_")
        with borrow_pair(forkers) as pair:
            return crash_cluster.sweep_point(world(t, name), pair, plan, baselines[t][1])

    quota = scale(fast=1, full=12)
    with ThreadPoolExecutor(PARALLEL) as pool:
        baselines = dict(zip(tasks, pool.map(base, tasks), strict=True))
        plan: list[tuple[str, Plan]] = []
        for t, (run, want) in baselines.items():
            assert want.status == ("success", "satisfied"), (t, want.status)
            assert any(want.effects), f"{t}: the uninterrupted run changed nothing"
            worker = crash_cluster.passes_of(run, "worker")
            plan += [(t, Plan(workers=(f"{s}:{n}",))) for s, n in select(worker, quota)]
            api = crash_cluster.passes_of(run, "api")
            plan += [(t, Plan(api=f"{s}:{n}")) for s, n in select(api, 1)]
        singles = list(pool.map(one, plan))
        doubles = [(t, Plan(workers=(a, b))) for t, a, b in
                   second_crashes(singles, scale(fast=1, full=20))]
        double_results = list(pool.map(one, doubles))
    seconds = time.monotonic() - began
    passes = {t: {k: dict(v) for k, v in b[0].passes.items()} for t, b in baselines.items()}
    for name, results in (("crash sweep (distributed, killed worker or API)", singles),
                          ("crash sweep (distributed, a second crash during recovery)",
                           double_results)):
        dist_report(name, results, passes, seconds, len(tasks))
    assert len(singles) >= scale(fast=1, full=48)
    assert len(double_results) >= scale(fast=1, full=20)


def dist_report(name: str, results: list[DistResult], passes: dict[str, Any],
                seconds: float, tasks: int) -> None:
    """Print, log and record a distributed sweep's figures; fail on any point that did not
    hold, or was not reached."""
    failed = [r for r in results if r.problems]
    unreached = [r for r in results if crash_cluster.unreached(r) and not r.problems]
    target = os.environ.get("FOREMAN_CRASH_SWEEP_LOG")
    if target:
        with Path(target).open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps({"sweep": name, **json.loads(r.as_json())}) + "\n"
                            for r in results))
    by_site = Counter(p.split(":")[1] for r in results for p in r.points)
    per_point = sum(r.seconds for r in results) / max(1, len(results))
    print(f"{name}: {len(results)} points over {tasks} tasks ({seconds:.0f}s for the whole "
          f"distributed sweep, {per_point:.1f}s a point); failed {len(failed)}, not reached "
          f"{len(unreached)}; baseline passes per process: {json.dumps(passes, sort_keys=True)}")
    sites = ", ".join(f"{s} ({by_site[s]})" for s in sorted(by_site))
    record(name, len(results), len(failed) + len(unreached),
           "an API replica and `foreman worker` processes on PostgreSQL: a SIGKILL of the "
           "worker (or API) at the n-th pass of a durable write; the next worker takes the "
           "stalled job over after the stall timeout and finishes; the same side effects and "
           "provider calls as an uninterrupted run on the cluster, no tool call left open, "
           f"the audit chain verifies, the run ends; {tasks} tasks, points per site: {sites}; "
           f"model calls in flight at a kill and asked again: {sum(r.resent for r in results)}")
    assert not failed, "\n".join(f"{r.task} {r.points}: {r.problems}" for r in failed)
    assert not unreached, [f"{r.task} {r.points} killed {r.kills}" for r in unreached]
