"""A distributed-mode cluster on loopback for tests: API replicas and worker processes on
one PostgreSQL schema, each process with its own data dir, all acting on one sandbox (the
demo pack's tables in that schema, its default when Foreman has a database URL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.api.conftest import ROOT, free_port
from tools import sandbox


def base_env(data_dir: Path, pg_url: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FOREMAN_", "LANGGRAPH_", "LANGSMITH_", "OPENAI_"))}
    env.update({"FOREMAN_CONFIG": str(ROOT / "foreman.yaml"), "FOREMAN_OFFLINE": "1",
                "FOREMAN_DATA_DIR": str(data_dir), "FOREMAN_DATABASE_URL": pg_url,
                "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "FOREMAN_QUEUE__API_EXECUTES": "false",
                "FOREMAN_QUEUE__HEARTBEAT_S": "0.5", "FOREMAN_QUEUE__STALL_TIMEOUT_S": "3",
                "FOREMAN_KNOWLEDGE__INGEST_BUNDLED": "false", **extra})
    return env


@dataclass
class Node:
    """One process of the cluster (an API replica or a worker)."""

    kind: str
    data_dir: Path
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Node:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.kind == "api":
            self.port = free_port()
            cmd = [sys.executable, "-m", "uvicorn", "tests.e2e.cluster_node:create_api",
                   "--factory", "--host", "127.0.0.1", "--port", str(self.port),
                   "--log-level", "warning"]
        else:
            cmd = [sys.executable, "-m", "tests.e2e.cluster_node", "worker"]
        with open(self.data_dir / f"{self.kind}.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=log)
        return self

    def log(self) -> str:
        return (self.data_dir / f"{self.kind}.log").read_text(errors="replace")

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log()[-3000:]}")
            if self.kind == "api":
                try:
                    if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            elif "foreman worker ready" in self.log():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.kind} did not become ready: {self.log()[-3000:]}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)


@dataclass
class Cluster:
    """API replicas and workers on one database."""

    root: Path
    pg_url: str
    env: dict[str, str] = field(default_factory=dict)
    apis: list[Node] = field(default_factory=list)
    workers: list[Node] = field(default_factory=list)
    _n: int = 0

    def __post_init__(self) -> None:
        self.sandbox = self.pg_url
        sandbox.ensure(self.sandbox)

    def _node(self, kind: str, extra: dict[str, str]) -> Node:
        self._n += 1
        data = self.root / f"{kind}-{self._n}"
        shared = json.dumps([{"name": "demo", "settings": {}}])  # no path: the shared database
        env = base_env(data, self.pg_url, {"FOREMAN_TOOLS__PACKS": shared, **self.env, **extra})
        return Node(kind, data, env)

    def start(self, apis: int, workers: int, **extra: str) -> Cluster:
        # The first API creates the schema alone; the rest start together.
        first = self._node("api", extra).start()
        first.wait_ready()
        self.apis.append(first)
        more = [self._node("api", extra).start() for _ in range(apis - 1)]
        new = [self._node("worker", extra).start() for _ in range(workers)]
        for n in more + new:
            n.wait_ready()
        self.apis += more
        self.workers += new
        return self

    def add_worker(self, **extra: str) -> Node:
        w = self._node("worker", extra).start()
        w.wait_ready()
        self.workers.append(w)
        return w

    def stop(self) -> None:
        for n in self.workers + self.apis:
            n.stop()
