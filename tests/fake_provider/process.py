"""Start the fake provider as a uvicorn process on a free 127.0.0.1 port; stop it after."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeProvider:
    """A running fake provider: its ``api_base`` and its control endpoint."""

    port: int

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def control(self, **body: Any) -> None:
        url = f"http://127.0.0.1:{self.port}/_control"
        httpx.post(url, json=body, timeout=10).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        r = httpx.get(f"http://127.0.0.1:{self.port}/_control/requests", timeout=10)
        return list(r.json()["requests"])

    def first_token_at(self) -> list[float]:
        r = httpx.get(f"http://127.0.0.1:{self.port}/_control/requests", timeout=10)
        return list(r.json()["first_token_at"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fake_provider(**env: str) -> Iterator[FakeProvider]:
    """The fake provider in its own process; waits (bounded) until it answers."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.fake_provider.app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"fake provider did not start: {err[-2000:]}")
            time.sleep(0.1)
        yield FakeProvider(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
