"""Distributed-mode points of the crash sweep: an API replica (``foreman serve --workers 0``)
and ``foreman worker`` processes on one PostgreSQL schema, one of them killed at the n-th
pass of a site.

A point's world starts its API replica and one worker; the test is the client: it starts
the task over HTTP as a requester and approves what the run asks for as an approver of the
rule's group (``POST /v1/approvals/{id}/decision``). When the armed worker dies, the next
worker starts: its stalled-job rescue puts the dead worker's job back in the queue once
the heartbeat is older than the stall timeout, and it takes the run over from its last
checkpoint. When the armed API dies, a new replica starts. Only one worker lives at a time,
so no live worker is ever taken over; each process is forked by ``crash_forker`` (two fork
servers a point: the API's and the workers').
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from app.api.auth import digest
from app.runs.run_manager import TERMINAL
from tests.api.conftest import free_port
from tests.verify.crash_sweep import (
    KILLED,
    Forker,
    Kills,
    Outcome,
    World,
    compare,
    in_flight,
    observe,
)
from tools import sandbox

HEARTBEAT_S, STALL_S = "0.25", "1"  # one worker at a time: small is safe, and each point is fast
POINT_S = 180.0  # bound on one point on this loaded machine (a point takes seconds)
READY_S = 120.0
SECRET = "sweep-key-"  # the API keys' prefix; each world has a requester and an approver


class PointFailed(AssertionError):
    """A distributed point could not be driven to the end (a process died unexpectedly,
    or the run stayed unfinished past the bound)."""


@dataclass
class Proc:
    """One forked process of a world; its exit code is read in the background."""

    role: str
    n: int
    forker: Forker
    pid: int
    armed: str | None
    rc: int | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def watch(self) -> Proc:
        def wait() -> None:
            self.rc = self.forker.finish(self.pid, None)
            self.done.set()

        threading.Thread(target=wait, name=f"{self.role}-{self.pid}", daemon=True).start()
        return self

    @property
    def alive(self) -> bool:
        return not self.done.is_set()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (a graceful stop), SIGKILL when it does not end in ``timeout``."""
        if not self.alive:
            return
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        if not self.done.wait(timeout):
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.done.wait(30)


@dataclass
class Plan:
    """Where a point's processes die: the API at ``api``, the i-th worker at ``workers[i]``
    (``SITE:N`` each); ``count``: every process counts its passes (the baseline, and the
    recovering worker of a single-crash point)."""

    api: str | None = None
    workers: tuple[str, ...] = ()
    count: bool = False


@dataclass
class Run:
    """What happened to the processes of one point."""

    kills: list[str] = field(default_factory=list)  # "worker-1", "api-1", ...
    killed: Kills = field(default_factory=dict)  # their pids, and when each was seen dead
    passes: dict[str, Counter[str]] = field(default_factory=dict)  # per process
    problems: list[str] = field(default_factory=list)
    timeline: list[tuple[str, float]] = field(default_factory=list)  # seconds into the point


class Cluster:
    """The processes of one distributed world and the client that drives its task."""

    def __init__(self, world: World, api_forker: Forker, worker_forker: Forker,
                 plan: Plan) -> None:
        assert world.database_url
        self.world, self.plan = world, plan
        self.forkers = {"api": api_forker, "worker": worker_forker}
        self.procs: list[Proc] = []
        self.port = 0
        self._mark: Callable[[str], None] = lambda what: None
        task = world.task
        self.keys = {"requester": SECRET + "requester", "approver": SECRET + "approver"}
        self.api_keys = json.dumps([
            {"name": "alice", "key_sha256": digest(self.keys["requester"]),
             "tenant": task.tenant, "roles": ["requester"]},
            {"name": "bob", "key_sha256": digest(self.keys["approver"]), "tenant": task.tenant,
             "roles": ["approver"], "groups": [task.group]}])
        world.data.mkdir(parents=True, exist_ok=True)
        sandbox.ensure(world.database_url)

    # processes
    def _spawn(self, role: str) -> Proc:
        n = 1 + sum(p.role == role for p in self.procs)
        armed = (self.plan.api if n == 1 else None) if role == "api" else (
            self.plan.workers[n - 1] if n <= len(self.plan.workers) else None)
        home = self.world.home / f"{role}-{n}"
        home.mkdir(parents=True, exist_ok=True)
        extra = {"FOREMAN_DATA_DIR": str(home), "FOREMAN_TESTING": "1",
                 "FOREMAN_SWEEP_CALLS": str(self.world.data / "calls.log"),
                 "FOREMAN_QUEUE__API_EXECUTES": "false", "FOREMAN_QUEUE__HEARTBEAT_S": HEARTBEAT_S,
                 "FOREMAN_QUEUE__STALL_TIMEOUT_S": STALL_S,
                 "FOREMAN_KNOWLEDGE__INGEST_BUNDLED": "false",
                 "FOREMAN_AUTH__API_KEYS": self.api_keys}
        if armed:
            extra["FOREMAN_CRASH_AT"] = armed
        if self.plan.count or (role == "worker" and n == len(self.plan.workers) + 1
                               and len(self.plan.workers) == 1):
            extra["FOREMAN_CRASH_COUNT"] = str(self.world.home / f"passes-{role}-{n}.log")
        argv = [str(self.world.config)]
        if role == "api":
            self.port = free_port()
            argv.append(str(self.port))
        forker = self.forkers[role]
        pid = forker.start(role, argv, self.world.env(**extra), self.world.home,
                           home / f"{role}.log")
        proc = Proc(role, n, forker, pid, armed).watch()
        self.procs.append(proc)
        return proc

    def _current(self, role: str) -> Proc:
        return [p for p in self.procs if p.role == role][-1]

    def _api_ready(self, deadline: float) -> None:
        api = self._current("api")
        while time.monotonic() < deadline:
            if not api.alive:
                return  # the caller sees it dead and starts another
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise PointFailed(f"the API did not become ready: {self._log(api)}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _log(self, p: Proc) -> str:
        path = self.world.home / f"{p.role}-{p.n}" / f"{p.role}.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    def _replace_dead(self, run: Run, deadline: float) -> None:
        """A dead process was killed by its plan (then its successor starts) or failed."""
        for role in ("api", "worker"):
            p = self._current(role)
            if p.alive:
                continue
            if p.rc != KILLED or p.armed is None:
                raise PointFailed(f"{role}-{p.n} exited {p.rc}: {self._log(p)}")
            run.kills.append(f"{role}-{p.n}@{p.armed}")
            run.killed[p.pid] = time.time()
            self._mark(f"{role}-{p.n} killed")
            self._spawn(role)
            if role == "api":
                self._api_ready(deadline)

    # the client
    def _http(self, method: str, path: str, who: str, **kw: Any) -> httpx.Response | None:
        """One request; None when the API is gone (it was killed, or is dying)."""
        try:
            return httpx.request(method, self.url + path, timeout=30,
                                 headers={"Authorization": f"Bearer {self.keys[who]}"}, **kw)
        except httpx.TransportError:
            return None

    def _db(self) -> psycopg.Connection[dict[str, Any]]:
        assert self.world.database_url
        return psycopg.connect(self.world.database_url, autocommit=True,
                               row_factory=dict_row)

    def _start_task(self, db: psycopg.Connection[dict[str, Any]]) -> str | None:
        """Start the task (once: a start whose answer was lost is found in the database)."""
        row = db.execute("SELECT id FROM runs WHERE thread_id = %s ORDER BY created_at DESC"
                         " LIMIT 1", (self.world.key,)).fetchone()
        if row:
            return str(row["id"])
        task, thread = self.world.task, self.world.thread
        made = self._http("POST", "/threads", "requester",
                          json={"thread_id": thread, "if_exists": "do_nothing"})
        if made is None or made.status_code != 200:
            return None
        started = self._http("POST", f"/threads/{thread}/runs", "requester", json={
            "assistant_id": task.team,
            "input": {"messages": [{"role": "user", "content": task.text}]}})
        if started is None:
            return None
        if started.status_code != 200:
            raise PointFailed(f"starting the run: {started.status_code} {started.text}")
        return str(started.json()["run_id"])

    def drive(self) -> Run:
        """Start the processes, drive the task to its end, stop the processes."""
        run = Run()
        began = time.monotonic()
        deadline = began + POINT_S

        def mark(what: str) -> None:
            run.timeline.append((what, round(time.monotonic() - began, 2)))

        self._mark = mark
        try:
            self._spawn("api")
            self._api_ready(min(deadline, time.monotonic() + READY_S))
            mark("api ready")
            self._spawn("worker")
            with self._db() as db:
                run_id = None
                while time.monotonic() < deadline:
                    self._replace_dead(run, deadline)
                    run_id = run_id or self._start_task(db)
                    if run_id and self._step(db, run_id):
                        mark("run ended")
                        break
                    time.sleep(0.05)
                else:
                    raise PointFailed(f"the run did not end in {POINT_S:.0f}s; kills "
                                      f"{run.kills}")
        except PointFailed as e:
            run.problems.append(str(e))
        finally:
            for p in self.procs:
                p.stop()
            mark("stopped")
        for p in self.procs:
            counted = self.world.home / f"passes-{p.role}-{p.n}.log"
            if counted.exists():
                run.passes[f"{p.role}-{p.n}"] = Counter(counted.read_text().split())
        return run

    def _step(self, db: psycopg.Connection[dict[str, Any]], run_id: str) -> bool:
        """One look at the run: decide what it waits for; True once it ended and no job of
        it is left (its worker wrote everything it was going to)."""
        row = db.execute("SELECT status FROM runs WHERE id = %s", (run_id,)).fetchone()
        if row is None:
            return False
        if row["status"] in TERMINAL:
            jobs = db.execute("SELECT COUNT(*) AS n FROM procrastinate_jobs"
                              " WHERE status IN ('todo', 'doing')").fetchone()
            return bool(jobs and jobs["n"] == 0)
        if row["status"] == "interrupted":
            for a in db.execute("SELECT id FROM approvals WHERE run_id = %s AND status ="
                                " 'pending' ORDER BY created_at", (run_id,)).fetchall():
                # 409 while the interrupt is not checkpointed yet: asked again next look.
                self._http("POST", f"/v1/approvals/{a['id']}/decision", "approver",
                           json={"decision": "approve"})
        return False


@dataclass
class DistResult:
    """One distributed point: where it was killed, what differed afterwards."""

    task: str
    points: list[str]  # "worker:SITE:N" / "api:SITE:N", in kill order
    kills: list[str]
    problems: list[str]
    seconds: float
    recovery: dict[str, int] = field(default_factory=dict)  # the recovering worker's passes
    resent: int = 0  # model calls in flight at a kill, asked again after it

    def as_json(self) -> str:
        return json.dumps({k: v for k, v in self.__dict__.items() if k != "recovery"})


def baseline(world: World, forkers: tuple[Forker, Forker]) -> tuple[Run, Outcome]:
    """The task uninterrupted on the cluster, every process counting its passes."""
    run = Cluster(world, *forkers, Plan(count=True)).drive()
    assert not run.problems and not run.kills, run.problems
    return run, observe(world)


def sweep_point(world: World, forkers: tuple[Forker, Forker], plan: Plan,
                want: Outcome) -> DistResult:
    """Kill where ``plan`` says, let the cluster take over and finish, compare."""
    began = time.monotonic()
    run = Cluster(world, *forkers, plan).drive()
    points = ([f"api:{plan.api}"] if plan.api else []) + [f"worker:{w}" for w in plan.workers]
    problems, resent = list(run.problems), 0
    if not problems:
        got = observe(world)
        problems = compare(world.task, got, want, run.killed)
        resent = in_flight(got, run.killed)[0]
    recovery = run.passes.get("worker-2", Counter()) if len(plan.workers) == 1 else Counter()
    return DistResult(world.task.id, points, run.kills, problems,
                      round(time.monotonic() - began, 2), dict(recovery), resent)


def unreached(result: DistResult) -> bool:
    """An armed process that never reached its point (the run took another path)."""
    return len(result.kills) < len(result.points)


def passes_of(run: Run, role: str) -> dict[str, int]:
    """A baseline's passes by its one process of ``role``."""
    return dict(run.passes.get(f"{role}-1", Counter()))
