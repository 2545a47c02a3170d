"""Figures 4 and 6, through a real ``foreman serve`` on 127.0.0.1 (see evals/bench/server.py).

4. Concurrency: ``RUNS`` runs started at once with ``LATENCY_MS`` scripted models, polled
   with ``GET /threads/{id}/runs/{run_id}``. Ideal wall time = runs × T1 / concurrency, where
   T1 is one run alone on the same server, measured just before, and concurrency is
   min(runs, ``runs.max_concurrent``). Throughput as a fraction of ideal = ideal / actual.
   Status-read latency under load against the same reads on the idle server; peak RSS
   (VmHWM) against the peak before the load; the server's CPU per run against the
   raw-LangGraph graph of the same shape (evals/bench/rawcpu.py), once the server stopped.
6. Approval round trip (evals/bench/approval.py), on the same server before the load.

Bounded: a hard timeout per phase, loopback only, the server is stopped on the way out.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import httpx

from evals.bench import approval
from evals.bench.approval import percentile
from evals.bench.rawcpu import baseline_cpu_ms, delegations_per_run, tool_calls_per_run
from evals.bench.server import TERMINAL, Server, client, epoch, start_run
from evals.bench.stats import Row, Stat

RUNS = 200
LATENCY_MS = 200
POLL_S = 1.0  # per run; ~RUNS/POLL_S status reads a second during the load
LOAD_TIMEOUT_S = 180.0
APPROVALS = 20
APPROVAL_TIMEOUT_S = 90.0
GOAL_FRACTION = 0.8
GOAL_APPROVAL_P95_S = 0.1
GOAL_RAW_CPU = 1.5  # server CPU per run against the raw-LangGraph graph of the same shape
TEAM = "support"
WHERE = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"


def _env() -> dict[str, str]:
    return {"FOREMAN_SCRIPTED_LATENCY_MS": str(LATENCY_MS),
            "FOREMAN_RUNS__MAX_CONCURRENT": str(RUNS),
            "FOREMAN_RUNS__RATE_LIMIT_PER_MINUTE": str(RUNS * 100)}


def _cpu_s(server: Server) -> float:
    """User + system CPU seconds of the server process so far."""
    if server.proc is None:
        return 0.0
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _until_done(c: httpx.AsyncClient, thread_id: str, run_id: str, poll_s: float,
                      reads: list[float] | None = None) -> dict[str, Any]:
    while True:
        started = time.perf_counter()
        r = await c.get(f"/threads/{thread_id}/runs/{run_id}")
        if reads is not None:
            reads.append(time.perf_counter() - started)
        run: dict[str, Any] = r.json()
        if run["status"] in TERMINAL:
            return run
        await asyncio.sleep(poll_s)


async def _alone(c: httpx.AsyncClient) -> float:
    """Seconds from the first POST to the run's last update, with nothing else running."""
    sent = time.time()
    thread_id, run_id = await start_run(c, TEAM, WHERE)
    run = await _until_done(c, thread_id, run_id, 0.05)
    return epoch(run["updated_at"]) - sent


async def _idle_reads(c: httpx.AsyncClient, n: int = 60) -> list[float]:
    thread_id, run_id = await start_run(c, TEAM, WHERE)
    await _until_done(c, thread_id, run_id, 0.1)
    reads: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        (await c.get(f"/threads/{thread_id}/runs/{run_id}")).raise_for_status()
        reads.append(time.perf_counter() - started)
    return reads


async def _load(c: httpx.AsyncClient) -> tuple[float, list[dict[str, Any]], list[float]]:
    """Start ``RUNS`` runs at once; (wall seconds, finished runs, status-read seconds)."""
    reads: list[float] = []
    sent = time.time()

    async def one() -> dict[str, Any]:
        thread_id, run_id = await start_run(c, TEAM, WHERE)
        await asyncio.sleep(random.uniform(0, POLL_S))  # spread the polls
        return await _until_done(c, thread_id, run_id, POLL_S, reads)

    tasks = [asyncio.create_task(one()) for _ in range(RUNS)]
    done, pending = await asyncio.wait(tasks, timeout=LOAD_TIMEOUT_S)
    for t in pending:
        t.cancel()
    finished = [t.result() for t in done if t.exception() is None]
    ends = [epoch(r["updated_at"]) for r in finished]
    wall = (max(ends) - sent) if finished and not pending else LOAD_TIMEOUT_S
    return wall, finished, reads


async def _measure(workdir: Path, config: Path | None, only: set[str], reps: int
                   ) -> list[Row]:
    rows: list[Row] = []
    with Server(workdir / "http", _env(), config) as server:
        async with client(server.url, connections=RUNS + 16) as c:
            await _alone(c)  # warm-up: waits for the bundled knowledge and the embedder
            idle = await _idle_reads(c)
            alone = [await _alone(c) for _ in range(max(3, min(reps, 5)))]
            if "6" in only:
                trips = await approval.round_trips(c, APPROVALS, APPROVAL_TIMEOUT_S)
                rows += _approval_rows(trips, idle)
            if "4" in only:
                await asyncio.sleep(1.0)  # let resumed runs finish
                rss_before, cpu_before = server.memory_kb(), _cpu_s(server)
                wall, finished, reads = await _load(c)
                cpu = _cpu_s(server) - cpu_before
                rows += _load_rows(wall, finished, reads, idle, alone, rss_before,
                                   server.memory_kb(), cpu)
    if "4" in only:  # after the server stopped, so nothing else takes the cores
        db = workdir / "http" / "foreman.db"
        rounds, calls = delegations_per_run(db), tool_calls_per_run(db)
        tool_step = calls >= rounds
        raw_ms = await baseline_cpu_ms(workdir / "raw", RUNS, rounds, tool_step=tool_step)
        floor_ms = await baseline_cpu_ms(workdir / "raw", RUNS, rounds)
        rows += _raw_rows(cpu * 1000 / RUNS, raw_ms, floor_ms, rounds, calls, tool_step)
    return rows


def _raw_rows(cpu_ms: float, raw_ms: float, floor_ms: float, rounds: int, calls: int,
              tool_step: bool) -> list[Row]:
    """The goal row against the same shape, and the one-node subgraph's floor beside it."""
    ratio = cpu_ms / raw_ms
    step = "a tool call's 3 supersteps" if tool_step else "1 superstep"
    return [
        Row("4 concurrency", f"server CPU per run vs the raw-LangGraph graph of the same "
            f"shape ({rounds} delegations of {step}; the runs made {calls} tool calls; "
            f"{RUNS} at once, SQLite saver)", Stat.of([cpu_ms]), "ms", Stat.of([raw_ms]),
            "raw LangGraph, same saver", Stat.of([ratio]), f"<= {GOAL_RAW_CPU:.1f}x",
            ratio <= GOAL_RAW_CPU),
        Row("4 concurrency", f"the same against a one-node subgraph per delegation (the "
            f"floor, {rounds} delegations)", Stat.of([cpu_ms]), "ms", Stat.of([floor_ms]),
            "raw LangGraph, one-node steps", Stat.of([cpu_ms / floor_ms])),
    ]


def _pcts(values: list[float]) -> tuple[Stat, Stat]:
    return (Stat.of([percentile(values, 0.5) * 1000]),
            Stat.of([percentile(values, 0.95) * 1000]))


def _load_rows(wall: float, finished: list[dict[str, Any]], reads: list[float],
               idle: list[float], alone: list[float], rss_before_kb: int, rss_kb: int,
               cpu_s: float) -> list[Row]:
    concurrency = min(RUNS, RUNS)  # runs.max_concurrent is raised to RUNS
    t1 = Stat.of(alone)
    ideal = RUNS * t1.median / concurrency
    ok = sum(1 for r in finished if r["status"] == "success")
    fraction = ideal / wall if ok == RUNS else ideal / wall * ok / RUNS
    ratio = Stat.of([wall / ideal])
    p50, p95 = _pcts(reads) if reads else (Stat.of([0.0]), Stat.of([0.0]))
    i50, i95 = _pcts(idle)
    detail = {"runs": RUNS, "succeeded": ok, "finished": len(finished),
              "latency_ms": LATENCY_MS, "concurrency": concurrency,
              "one_run_alone_s": [round(s, 3) for s in alone], "ideal_wall_s": round(ideal, 3),
              "wall_s": round(wall, 3), "runs_per_s": round(ok / wall, 2),
              "timeout_s": LOAD_TIMEOUT_S, "server_cpu_s": round(cpu_s, 1),
              "server_cpu_ms_per_run": round(cpu_s * 1000 / RUNS, 1)}
    label = f"{RUNS} runs at once, {LATENCY_MS} ms models"
    # What the goal allows: every core busy for ideal / goal seconds, shared by the runs.
    cores = os.cpu_count() or 1
    budget_ms = cores * ideal / GOAL_FRACTION / RUNS * 1000
    cpu_ms = cpu_s * 1000 / RUNS
    return [
        Row("4 concurrency", f"{label}: throughput vs ideal (runs x T1 / concurrency)",
            Stat.of([fraction * 100]), "% of ideal", Stat.of([ideal]),
            "ideal wall s, T1 = one run alone", ratio, f">= {GOAL_FRACTION:.0%}",
            fraction >= GOAL_FRACTION, detail),
        Row("4 concurrency", f"status read during the load, p50 ({len(reads)} reads)", p50,
            "ms", i50, "idle server", Stat.of([p50.median / i50.median])),
        Row("4 concurrency", "status read during the load, p95", p95, "ms", i95,
            "idle server", Stat.of([p95.median / i95.median])),
        Row("4 concurrency", f"server CPU per run during the load ({cores} cores)",
            Stat.of([cpu_ms]), "ms", Stat.of([budget_ms]),
            f"most the {GOAL_FRACTION:.0%} goal allows", Stat.of([cpu_ms / budget_ms])),
        Row("4 concurrency", "server peak RSS (VmHWM) after the load", Stat.of([rss_kb / 1024]),
            "MB", Stat.of([rss_before_kb / 1024]), "peak before the load",
            Stat.of([rss_kb / max(1, rss_before_kb)])),
    ]


def _approval_rows(trips: approval.RoundTrips, idle: list[float]) -> list[Row]:
    detail = approval.detail(trips)
    if not trips.next_event:
        return [Row("6 approval", "decision -> the run's next event", Stat.of([0.0]), "ms",
                    goal=f"p95 <= {GOAL_APPROVAL_P95_S * 1000:.0f} ms", met=False,
                    detail=detail)]
    p50, p95 = _pcts(trips.next_event)
    i50, i95 = _pcts(idle)
    n = len(trips.next_event)
    return [
        Row("6 approval", f"decision -> the run's next event, p50 ({n} approvals)", p50, "ms",
            i50, "status read, idle", Stat.of([p50.median / i50.median]), detail=detail),
        Row("6 approval", "decision -> the run's next event, p95", p95, "ms", i95,
            "status read, idle", Stat.of([p95.median / i95.median]),
            f"<= {GOAL_APPROVAL_P95_S * 1000:.0f} ms",
            p95.median <= GOAL_APPROVAL_P95_S * 1000 and n == APPROVALS),
    ]


async def http_figures(config: Path | None, workdir: Path, only: set[str], reps: int
                       ) -> list[Row]:
    """Rows of figures 4 and/or 6."""
    return await _measure(workdir, config, only, reps)
