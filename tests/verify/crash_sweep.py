"""The machinery of the crash sweep: a fresh world per point, the driver processes, and the
comparison of what a killed-and-restarted run left behind with an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.governance.audit import audit_entry
from app.storage.db import open_database
from app.storage.store import Store
from app.storage.thread_keys import thread_key
from tests.app.tooling.crm import Crm
from tests.e2e.mcp_project import make_project
from tests.verify.crash_tasks import Task
from tools import sandbox

ROOT = Path(__file__).resolve().parents[2]
KILLED = -9
TIMED_OUT = -1000
# Journaled cost within 5% of the uninterrupted run's (provider calls are counted per call
# key apart from this): a resumed call's prompt says what was replayed or settled before the
# crash, a few tokens more on runs of a handful of calls; one more call would cost 10% or more.
COST_SLACK = 0.05
# The fork server's first answer waits for its imports: tens of seconds of a loaded machine
# when several start together and no bytecode cache is written.
STARTUP_S = 600.0
RESTARTS = 1  # a restart is never armed, so one must finish the run; more would hide a stuck one
Kills = dict[int, float]  # pid of a killed process -> when it was seen dead (wall clock)


@dataclass
class World:
    """Where one point's processes keep their state: a data dir of its own, the task's
    config, and the database its side effects land in (the sandbox, or the shared CRM's)."""

    task: Task
    home: Path
    config: Path
    crm: Crm | None = None
    database_url: str | None = None  # PostgreSQL (a schema of its own), else SQLite

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def thread(self) -> str:
        """Of one length in every world: thread ids reach prompts (an MCP result echoes its
        idempotency key), and the same run must cost the same in each. From the whole path:
        the CRM server is shared by every sweep of a session, and two sweeps' worlds of one
        name (``crm-baseline``) must not see each other's credits."""
        return f"t-{self.task.id}-{hashlib.sha256(str(self.home).encode()).hexdigest()[:12]}"

    @property
    def key(self) -> str:
        """The thread's key inside Foreman (runs, ledger rows and idempotency keys use it)."""
        return thread_key(self.task.tenant, self.thread)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FOREMAN_", "OPENAI_", "ANTHROPIC_"))}
        return {**env, "PYTHONPATH": str(ROOT), "FOREMAN_DATA_DIR": str(self.data),
                "FOREMAN_OFFLINE": "1", "FOREMAN_CONFIG": str(self.config),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                **({"FOREMAN_DATABASE_URL": self.database_url} if self.database_url else {}),
                **extra}

    def effects(self) -> list[list[Any]]:
        """The rows of the task's side effects (on the CRM: this world's credits only)."""
        if self.crm is not None:
            conn: sandbox.Connection = sqlite3.connect(self.crm.db, timeout=10)
        else:  # the demo pack's sandbox: in Foreman's database when it has one
            conn = sandbox.connect(self.database_url or self.data / "sandbox.db")
        try:
            return [[list(r) for r in conn.execute(sql, (f"{self.key}:%",) * sql.count("?"))]
                    for sql in self.task.effects]
        finally:
            conn.close()


def make_world(task: Task, home: Path, crm: Crm | None = None, project: Path | None = None,
               database_url: str | None = None) -> World:
    """A fresh data dir; an MCP task runs the project made by :func:`make_crm_project`
    against the shared CRM server (each world's thread keeps its credits apart)."""
    home.mkdir(parents=True, exist_ok=True)
    if not task.mcp:
        return World(task, home, ROOT / "foreman.yaml", database_url=database_url)
    assert crm is not None and project is not None
    return World(task, home, project / "foreman.yaml", crm, database_url)


def make_crm_project(folder: Path, crm: Crm) -> Path:
    """The MCP task's project (``foreman init``, rewired to the CRM server) once a sweep."""
    make_project(folder, crm.url)
    return folder


class Forker:
    """A running fork server (``crash_forker``): each :meth:`run` is one driver process."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.verify.crash_forker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env, cwd=ROOT)

    def _line(self, timeout: float | None) -> dict[str, Any]:
        assert self.proc.stdout is not None
        # A selector, not select(): late in a long test session descriptors pass 1024.
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise TimeoutError
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        out: dict[str, Any] = json.loads(line)
        return out

    def start(self, role: str, argv: list[str], env: dict[str, str], cwd: Path,
              log: Path) -> int:
        """Fork one child of ``role`` (``driver``, ``worker``, ``api``); its pid. One child
        at a time: :meth:`finish` before the next."""
        assert self.proc.stdin is not None
        request = {"role": role, "argv": argv, "env": env, "cwd": str(cwd), "log": str(log)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return int(self._line(STARTUP_S)["pid"])

    def finish(self, pid: int, timeout: float | None) -> int:
        """The child's exit code (``-9`` when killed); one over ``timeout`` is killed and
        reported as :data:`TIMED_OUT`."""
        try:
            return int(self._line(timeout)["rc"])
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self._line(60)
            return TIMED_OUT

    def run(self, world: World, env: dict[str, str], log: Path, timeout: float,
            kills: Kills) -> int:
        """One driver process of ``world`` to its end: its exit code (a killed one's pid
        goes into ``kills``)."""
        pid = self.start("driver", [str(world.config), world.task.id, world.thread], env,
                         world.home, log)
        rc = self.finish(pid, timeout)
        if rc == KILLED:
            kills[pid] = time.time()
        return rc

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


def drive(forker: Forker, world: World, crash_at: str | None = None, count: bool = False,
          timeout: float = 240, kills: Kills | None = None) -> tuple[int, str]:
    """One driver process: killed at ``crash_at``, or counting passes, or plain; its exit
    code and the tail of its log."""
    extra = {"FOREMAN_TESTING": "1"}
    if crash_at:
        extra["FOREMAN_CRASH_AT"] = crash_at
    if count:
        extra["FOREMAN_CRASH_COUNT"] = str(world.home / "passes.log")
    log = world.home / "driver.log"
    start = log.stat().st_size if log.exists() else 0
    rc = forker.run(world, world.env(**extra), log, timeout, {} if kills is None else kills)
    with log.open("rb") as f:
        f.seek(start)
        tail = f.read().decode(errors="replace")[-1500:]
    return rc, tail


@dataclass
class Outcome:
    """What a task left behind, in the terms the sweep compares."""

    effects: list[list[Any]]
    status: tuple[str, str | None]
    journal: int  # model calls journaled (answered ones)
    cost_usd: float
    paid: Counter[str]  # provider calls per call key, over every process
    senders: dict[str, list[int]]  # the pids that sent each call key, in order
    journaled: dict[str, float]  # call key -> when its answer was journaled (first write)
    tools_open: list[str]  # tool calls not DONE, or left for a human
    audit_ok: bool
    audit_missing: int  # audited events without their audit entry
    problems: list[str] = field(default_factory=list)


def observe(world: World) -> Outcome:
    """Read the world's databases after its run ended."""
    effects = world.effects()
    calls = world.data / "calls.log"
    senders: dict[str, list[int]] = {}
    for line in (calls.read_text().splitlines() if calls.exists() else []):
        key, pid = line.split()
        senders.setdefault(key, []).append(int(pid))
    paid = Counter({k: len(v) for k, v in senders.items()})
    store = Store(open_database(world.database_url, world.data / "foreman.db"))
    try:
        run = store.latest_run(world.key)
        assert run is not None, "no run was recorded"
        journal = store.db.query("SELECT COUNT(*) AS n, COALESCE(SUM(cost_usd), 0) AS usd"
                                 " FROM model_calls WHERE run_id = ? AND outcome = 'ok'",
                                 (run.id,))[0]
        journaled = {r["call_key"]: float(r["created_at"]) for r in store.db.query(
            "SELECT call_key, created_at FROM model_calls WHERE run_id = ?"
            " AND response IS NOT NULL AND response <> 'null'", (run.id,))}
        open_tools = [f"{r['tool']}:{r['status']}" for r in store.db.query(
            "SELECT tool, status, result FROM tool_calls WHERE thread_id = ?",
            (world.key,))
            if r["status"] != "DONE" or "needs_human" in (r["result"] or "")]
        audited = sum(1 for e in store.events(run.id, 0, 100_000)
                      if audit_entry(e["type"], e["data"]) is not None)
        entries = len(store.audit_entries(run.tenant, run.id))
        verified = store.verify_audit()
        return Outcome(effects, (run.status, run.stop_reason), int(journal["n"]),
                       round(float(journal["usd"]), 9), paid, senders, journaled, open_tools,
                       verified.ok, audited - entries)
    finally:
        store.close()


def in_flight(got: Outcome, kills: Kills) -> tuple[int, list[str]]:
    """Split the call keys sent more than once: re-sends of a call that was in flight when
    its process was killed (its answer died with the process: it must be asked again), and
    keys paid twice. A key is paid twice when a live process sent it more than once, a
    killed process sent it twice, or it was sent again although its answer had been
    journaled before the kill."""
    resent, twice = 0, []
    for key, pids in got.senders.items():
        if len(pids) < 2:
            continue
        killed = [p for p in pids if p in kills]
        at = got.journaled.get(key)
        lost = (len(pids) - len(killed) <= 1 and len(set(killed)) == len(killed)
                and all(at is None or at > kills[p] for p in killed))
        if lost:
            resent += len(pids) - 1
        else:
            twice.append(key)
    return resent, sorted(twice)


def compare(task: Task, got: Outcome, want: Outcome, kills: Kills) -> list[str]:
    """Every way a crashed-and-resumed run differs from the uninterrupted one (``kills``:
    the processes killed on the way, whose in-flight calls are asked again)."""
    problems = []
    for sql, g, w in zip(task.effects, got.effects, want.effects, strict=True):
        if g != w:
            problems.append(f"side effects differ ({sql}): {g} != {w}")
    if got.status != want.status:
        problems.append(f"run ended {got.status}, uninterrupted {want.status}")
    resent, twice = in_flight(got, kills)
    if twice:
        problems.append(f"model calls paid twice: {twice}")
    if sum(got.paid.values()) != sum(want.paid.values()) + resent:
        problems.append(f"{sum(got.paid.values())} provider calls, uninterrupted "
                        f"{sum(want.paid.values())}, {resent} in flight at a kill")
    # The cost may differ by a few prompt tokens, never by a call: a restarted run's tool
    # results say they were replayed or reconciled, and the model reads that.
    if got.journal != want.journal or abs(got.cost_usd - want.cost_usd) > COST_SLACK * \
            want.cost_usd:
        problems.append(f"journal {got.journal} calls ${got.cost_usd}, uninterrupted "
                        f"{want.journal} calls ${want.cost_usd}")
    if got.tools_open:
        problems.append(f"tool calls left open or for a human: {got.tools_open}")
    if not got.audit_ok:
        problems.append("audit chain does not verify")
    if got.audit_missing:
        problems.append(f"{got.audit_missing} audited events have no audit entry")
    return problems


def count_passes(forker: Forker, world: World) -> tuple[dict[str, int], Outcome]:
    """Run the task once uninterrupted, counting each site's passes: the baseline."""
    rc, log = drive(forker, world, count=True)
    assert rc == 0, log
    passes = Counter((world.home / "passes.log").read_text().split())
    return dict(passes), observe(world)


@dataclass
class PointResult:
    """One (site, n) point: whether the kill happened, and what differed afterwards."""

    task: str
    site: str
    n: int
    killed: bool
    restarts: int
    problems: list[str]
    seconds: float
    resent: int = 0  # model calls in flight at the kill, asked again after it

    def as_json(self) -> str:
        return json.dumps(self.__dict__)


def sweep_point(forker: Forker, world: World, site: str, n: int,
                want: Outcome) -> PointResult:
    """Kill a fresh process at the n-th pass of ``site``, restart until the run ends,
    compare with the uninterrupted run."""
    began = time.monotonic()
    kills: Kills = {}
    rc, log = drive(forker, world, crash_at=f"{site}:{n}", kills=kills)
    killed = rc == KILLED
    problems: list[str] = []
    if not killed and rc != 0:
        problems.append(f"the armed process exited {rc}: {log[-800:]}")
    restarts = 0
    while rc != 0 and restarts < RESTARTS and not problems:
        restarts += 1
        rc, log = drive(forker, world, kills=kills)
        if rc != 0:
            problems.append(f"restart {restarts} exited {rc}: {log[-800:]}")
    resent = 0
    if not problems:
        got = observe(world)
        problems = compare(world.task, got, want, kills)
        resent = in_flight(got, kills)[0]
    return PointResult(world.task.id, site, n, killed, restarts, problems,
                       round(time.monotonic() - began, 2), resent)
