"""Real uvicorn servers on 127.0.0.1 (random free port), one subprocess each, offline models."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.auth import digest
from tools import sandbox

ROOT = Path(__file__).resolve().parents[2]
SUPPORT_REFUND = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
SUPPORT_WHERE = "Customer C-1002 asks where order O-5003 is; reply with its shipping status"

# Keys of the keyed server: tenant "acme" has one principal per role (bob is in the groups
# the test gate and the bundled refund rule name, carol in none), "ops" is the platform
# operator, tenant "globex" has one user and one admin.
KEYS = {
    "alice": ("acme", ["requester"], []),
    "bob": ("acme", ["approver"], ["billing-leads", "support-leads"]),
    "carol": ("acme", ["approver"], []),
    "root": ("acme", ["admin"], []),
    "ops": ("acme", ["operator"], []),
    "eve": ("globex", ["requester", "approver"], ["billing-leads"]),
    "gus": ("globex", ["admin"], []),
}


def key(name: str) -> str:
    """The raw API key of a test principal."""
    return f"sk-test-{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A ``foreman`` API process; restartable on the same data dir."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fresh_world(self) -> Server:
        """Reset the demo sandbox to its seeded rows (the server keeps running)."""
        sandbox.reset(self.data_dir / "sandbox.db")
        return self

    def start(self) -> Server:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FOREMAN_", "LANGGRAPH_", "LANGSMITH_", "OPENAI_"))}
        env.update({"FOREMAN_CONFIG": str(ROOT / "foreman.yaml"), "FOREMAN_OFFLINE": "1",
                    "FOREMAN_DATA_DIR": str(self.data_dir), "PYTHONPATH": str(ROOT),
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True", **self.env})
        with open(self.data_dir / "server.log", "ab") as log:  # the child keeps its own fd
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "tests.api.server:create", "--factory",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 120  # generous: CI machines are small and busy
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " +
                                   (self.data_dir / "server.log").read_text()[-3000:])
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def client(self, who: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key(who)}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)


def keyed_env() -> dict[str, str]:
    keys = [{"name": n, "key_sha256": digest(key(n)), "tenant": t, "roles": r, "groups": g}
            for n, (t, r, g) in KEYS.items()]
    return {"FOREMAN_AUTH__API_KEYS": json.dumps(keys)}


@pytest.fixture(scope="session")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Local dev mode (no keys), refunds held for approval."""
    s = Server(tmp_path_factory.mktemp("local"), {"FOREMAN_TEST_GATE": "refund"}).start()
    yield s
    s.stop()


@pytest.fixture
def server(local_server: Server) -> Server:
    """The shared local server, its world back to the seeded demo data: the scripted
    agents read what earlier tests did (a refunded order has nothing left to refund)."""
    return local_server.fresh_world()


@pytest.fixture(scope="session")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Local dev mode with slow scripted models, so runs stay busy long enough to observe."""
    s = Server(tmp_path_factory.mktemp("slow"), {"FOREMAN_SCRIPTED_LATENCY_MS": "60",
                                                 "FOREMAN_TEST_GATE": "open"}).start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def keyed_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """API keys for two tenants; refunds held for approval."""
    s = Server(tmp_path_factory.mktemp("keyed"),
               {"FOREMAN_TEST_GATE": "refund", **keyed_env()}).start()
    yield s
    s.stop()


@pytest.fixture
def keyed_server(keyed_process: Server) -> Server:
    """The shared keyed server, its world back to the seeded demo data."""
    return keyed_process.fresh_world()


def wait_status(c: httpx.Client, thread_id: str, run_id: str, statuses: set[str],
                timeout: float = 30) -> dict[str, Any]:
    """Poll a run until it reaches one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = c.get(f"/threads/{thread_id}/runs/{run_id}").json()
        if run["status"] in statuses:
            return dict(run)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {statuses}")
