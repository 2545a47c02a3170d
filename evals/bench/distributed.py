"""Figure 12, distributed mode against embedded on the same load (needs the loopback
PostgreSQL; ``FOREMAN_BENCH_DATABASE_URL`` names another).

``RUNS`` runs at once with ``LATENCY_MS`` scripted models, polled for status once a second.
Embedded: one ``foreman serve`` executing up to 2 x ``CONCURRENCY`` runs. Distributed: one
``foreman serve --workers 0`` and ``foreman worker --concurrency CONCURRENCY`` processes,
first one, then two (at their default CPU niceness, ``queue.worker_nice``), then two at the
API's priority (``--nice 0``), to show what the default buys on a host they share. Printed:
the status read's p95 during the load (the API's loop runs no graph in distributed mode)
and the throughput of two workers against one. That load is bound by CPU: on a host whose
cores also carry the API, PostgreSQL and the load, a second worker has little CPU to add.
A last pair is bound by the models instead (``SLOW``: slower models, fewer runs a worker
holds, as a worker calling real models spends its time): there a second worker adds the
runs it can hold, unless something shared (the queue, a lock, the database) serialises
them. Each phase has its own schema, dropped afterwards; bounded by a timeout per phase.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from evals.bench.approval import percentile
from evals.bench.concurrency import _until_done
from evals.bench.server import ROOT, Server, client, epoch, foreman_argv, start_run
from evals.bench.stats import Row, Stat

RUNS = 60
LATENCY_MS = 200
CONCURRENCY = 16
POLL_S = 1.0
LOAD_TIMEOUT_S = 240.0
TEAM = "support"
WHERE = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Shape:
    """A load: runs at once, model latency, runs a worker holds."""

    runs: int = RUNS
    latency_ms: int = LATENCY_MS
    concurrency: int = CONCURRENCY


SLOW = Shape(runs=16, latency_ms=500, concurrency=4)


def _schema_url(base: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    return schema, f"{base}?options=-csearch_path%3D{schema}"


def _env(url: str, api_executes: bool, shape: Shape) -> dict[str, str]:
    return {"FOREMAN_SCRIPTED_LATENCY_MS": str(shape.latency_ms), "FOREMAN_DATABASE_URL": url,
            "FOREMAN_RUNS__MAX_CONCURRENT": str(2 * shape.concurrency),
            "FOREMAN_RUNS__RATE_LIMIT_PER_MINUTE": str(shape.runs * 100),
            "FOREMAN_QUEUE__API_EXECUTES": "true" if api_executes else "false",
            "FOREMAN_KNOWLEDGE__INGEST_BUNDLED": "false"}


class WorkerProc:
    """``foreman worker`` in a subprocess."""

    def __init__(self, data_dir: Path, env: dict[str, str], nice: int | None = None,
                 concurrency: int = CONCURRENCY) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        full = {k: v for k, v in os.environ.items() if not k.startswith("FOREMAN_")}
        full.update({"FOREMAN_OFFLINE": "1", "FOREMAN_DATA_DIR": str(data_dir),
                     "LITELLM_LOCAL_MODEL_COST_MAP": "True", **env})
        with open(data_dir / "worker.log", "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own argv
                [*foreman_argv(), "worker", "--concurrency", str(concurrency),
                 *(["--nice", str(nice)] if nice is not None else [])], cwd=ROOT,
                env=full, stdout=subprocess.DEVNULL, stderr=log)

    def ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        log = self.data_dir / "worker.log"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("worker exited: " + log.read_text()[-2000:])
            if "foreman worker ready" in log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise RuntimeError("worker did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def _load(c: httpx.AsyncClient, runs: int) -> tuple[float, int, list[float]]:
    """(wall seconds, runs that succeeded, status-read seconds) of ``runs`` runs at once."""
    reads: list[float] = []
    sent = time.time()

    async def one() -> dict[str, Any]:
        thread_id, run_id = await start_run(c, TEAM, WHERE)
        await asyncio.sleep(random.uniform(0, POLL_S))
        return await _until_done(c, thread_id, run_id, POLL_S, reads)

    tasks = [asyncio.create_task(one()) for _ in range(runs)]
    done, pending = await asyncio.wait(tasks, timeout=LOAD_TIMEOUT_S)
    for t in pending:
        t.cancel()
    finished = [t.result() for t in done if t.exception() is None]
    ok = sum(1 for r in finished if r["status"] == "success")
    wall = max(epoch(r["updated_at"]) for r in finished) - sent if finished else LOAD_TIMEOUT_S
    return (wall if not pending else LOAD_TIMEOUT_S), ok, reads


async def _phase(workdir: Path, config: Path | None, url: str, workers: list[int],
                 nice: int | None = None, shape: Shape = Shape()
                 ) -> list[tuple[float, int, list[float]]]:
    """One server (embedded when ``workers`` is empty) and a load of ``shape`` per worker
    count; the workers at niceness ``nice`` (``None``: their default)."""
    out = []
    procs: list[WorkerProc] = []
    env = _env(url, api_executes=not workers, shape=shape)
    with Server(workdir / "api", env, config) as server:
        try:
            async with client(server.url, connections=RUNS + 16) as c:
                for n in workers or [0]:
                    while len(procs) < n:
                        procs.append(WorkerProc(workdir / f"worker-{len(procs)}", env, nice,
                                                shape.concurrency))
                        procs[-1].ready()
                    warm = await start_run(c, TEAM, WHERE)  # imports, first graph build
                    await _until_done(c, *warm, 0.2)
                    out.append(await _load(c, shape.runs))
        finally:
            for p in procs:
                p.stop()
    return out


async def distributed_figures(config: Path | None, workdir: Path) -> list[Row]:
    """Rows of figure 12 (one row saying why when PostgreSQL is not there)."""
    import psycopg

    base = os.environ.get("FOREMAN_BENCH_DATABASE_URL", PG_URL)
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        return [Row("12 distributed", f"skipped: no PostgreSQL at {base}", Stat.of([0.0]), "")]
    results: dict[str, list[tuple[float, int, list[float]]]] = {}
    try:
        for name, workers, nice, shape in (
                ("embedded", [], None, Shape()), ("distributed", [1, 2], None, Shape()),
                ("same_priority", [2], 0, Shape()), ("model_bound", [1, 2], None, SLOW)):
            schema, url = _schema_url(base)
            admin.execute(f"CREATE SCHEMA {schema}")
            try:
                results[name] = await _phase(workdir / name, config, url, workers, nice,
                                             shape)
            finally:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        admin.close()
    return _rows(results)


def _rows(results: dict[str, list[tuple[float, int, list[float]]]]) -> list[Row]:
    (e_wall, e_ok, e_reads), = results["embedded"]
    (w1, ok1, _), (w2, ok2, d_reads) = results["distributed"]
    (n_wall, n_ok, n_reads), = results["same_priority"]
    (s1, sok1, _), (s2, sok2, _) = results["model_bound"]
    e95 = percentile(e_reads, 0.95) * 1000
    d95 = percentile(d_reads, 0.95) * 1000
    n95 = percentile(n_reads, 0.95) * 1000
    label = f"{RUNS} runs at once, {LATENCY_MS} ms models"
    detail = {"runs": RUNS, "concurrency_per_worker": CONCURRENCY,
              "embedded": {"wall_s": round(e_wall, 2), "ok": e_ok, "reads": len(e_reads)},
              "one_worker": {"wall_s": round(w1, 2), "ok": ok1},
              "two_workers": {"wall_s": round(w2, 2), "ok": ok2, "reads": len(d_reads)},
              "two_workers_at_the_apis_priority": {"nice": 0, "wall_s": round(n_wall, 2),
                                                   "ok": n_ok, "reads": len(n_reads)},
              "model_bound": {"runs": SLOW.runs, "latency_ms": SLOW.latency_ms,
                              "concurrency_per_worker": SLOW.concurrency,
                              "one_worker": {"wall_s": round(s1, 2), "ok": sok1},
                              "two_workers": {"wall_s": round(s2, 2), "ok": sok2}}}
    return [
        Row("12 distributed", f"{label}: status read p95, 1 API + 2 workers (at their "
            "default niceness, queue.worker_nice)", Stat.of([d95]),
            "ms", Stat.of([e95]), f"embedded, {2 * CONCURRENCY} runs at once in the API",
            Stat.of([d95 / e95]) if e95 else None, "<= 50 ms", d95 <= 50, detail),
        Row("12 distributed", f"{label}: status read p95, 1 API + 2 workers at the API's "
            "priority (--nice 0)", Stat.of([n95]), "ms", Stat.of([e95]),
            f"embedded, {2 * CONCURRENCY} runs at once in the API",
            Stat.of([n95 / e95]) if e95 else None, detail=detail),
        Row("12 distributed", f"{label}: throughput, 2 workers vs 1",
            Stat.of([w1 / w2 if w2 else 0.0]), "x", Stat.of([w1]), "wall s with 1 worker",
            None, ">= 1.7x", bool(w2) and w1 / w2 >= 1.7 and ok1 == ok2 == RUNS, detail),
        Row("12 distributed", f"{SLOW.runs} runs at once, {SLOW.latency_ms} ms models, "
            f"{SLOW.concurrency} runs a worker: throughput, 2 workers vs 1 (bound by the "
            "models, not the CPU)", Stat.of([s1 / s2 if s2 and sok1 == sok2 == SLOW.runs
                                             else 0.0]),
            "x", Stat.of([s1]), "wall s with 1 worker", detail=detail),
    ]
