"""A real ``foreman serve`` process on 127.0.0.1 (random free port, its own data dir, offline
models) for the HTTP figures, and its peak resident memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def foreman_argv() -> list[str]:
    """The ``foreman`` console script of this interpreter (or its module fallback)."""
    script = Path(sys.executable).with_name("foreman")
    return [str(script)] if script.exists() else [sys.executable, "-c",
                                                  "from app.cli.main import main; main()"]


@dataclass
class Server:
    """``foreman serve`` in a subprocess; ``with Server(...) as s:`` stops it on exit."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    config: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180) -> Server:
        """Start and wait for ``/readyz`` (services open, runs accepted)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FOREMAN_", "LANGGRAPH_", "LANGSMITH_", "OPENAI_"))}
        env.update({"FOREMAN_OFFLINE": "1", "FOREMAN_DATA_DIR": str(self.data_dir),
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True", **self.env})
        cfg = ["--config", str(self.config)] if self.config else []
        with open(self.data_dir / "server.log", "ab") as log:  # the child keeps its own fd
            self.proc = subprocess.Popen(  # noqa: S603 - our own argv
                [*foreman_argv(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 *cfg], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + self.log()[-3000:])
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not become ready: " + self.log()[-3000:])

    def log(self) -> str:
        """What the server wrote to stderr."""
        path = self.data_dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def memory_kb(self, key: str = "VmHWM") -> int:
        """A ``/proc/<pid>/status`` figure in kB: VmHWM is peak RSS, VmRSS the current one."""
        if self.proc is None:
            return 0
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


TERMINAL = ("success", "error", "timeout", "interrupted")


def client(url: str, connections: int = 64) -> httpx.AsyncClient:
    """An async client for the server; idle connections are dropped before uvicorn's 5 s
    keep-alive closes them, so a request never lands on a half-closed socket."""
    return httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections,
        keepalive_expiry=2.0))


async def start_run(c: httpx.AsyncClient, team: str, task: str) -> tuple[str, str]:
    """``POST /threads`` then ``POST /threads/{id}/runs``: (thread id, run id)."""
    r = await c.post("/threads", json={})
    r.raise_for_status()
    thread_id = str(r.json()["thread_id"])
    r = await c.post(f"/threads/{thread_id}/runs", json={
        "assistant_id": team, "input": {"messages": [{"role": "user", "content": task}]}})
    r.raise_for_status()
    return thread_id, str(r.json()["run_id"])


def epoch(iso: str) -> float:
    """An ISO-8601 timestamp of the API as epoch seconds."""
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
