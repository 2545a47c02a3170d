"""``foreman serve`` answers liveness at once and the API once it is built."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.api.bootstrap import ASGIApp, Bootstrap, Message, Receive, Scope, Send
from evals.bench.server import free_port


class InnerApp:
    """A stand-in for the FastAPI app: records its lifespan, answers every request."""

    def __init__(self, fail_startup: bool = False) -> None:
        self.fail_startup = fail_startup
        self.lifespan: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.lifespan.append(message["type"])
                if message["type"] == "lifespan.startup":
                    if self.fail_startup:
                        await send({"type": "lifespan.startup.failed",
                                    "message": "database unreachable"})
                        return
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": f"inner {scope['path']}".encode()})


class Lifespan:
    """Plays uvicorn's side of the lifespan protocol."""

    def __init__(self, app: Bootstrap) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> Message:
        async def run() -> None:
            await self.app({"type": "lifespan"}, self.inbox.get, self.outbox.put)

        self.task = asyncio.create_task(run())
        await self.inbox.put({"type": "lifespan.startup"})
        return await asyncio.wait_for(self.outbox.get(), 5)

    async def shutdown(self) -> Message:
        await self.inbox.put({"type": "lifespan.shutdown"})
        reply = await asyncio.wait_for(self.outbox.get(), 5)
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)
        return reply


def _client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_bootstrap_answers_liveness_while_the_app_is_built() -> None:
    release = threading.Event()
    inner = InnerApp()

    def factory() -> ASGIApp:
        release.wait(10)  # the slow imports
        return inner

    stops: list[str] = []
    boot = Bootstrap(factory, on_failure=lambda: stops.append("stop"))
    life = Lifespan(boot)
    assert (await life.startup())["type"] == "lifespan.startup.complete"  # at once

    async with _client(boot) as c:
        health = await c.get("/healthz")
        ready = await c.get("/readyz")
        threads = await c.post("/threads", json={})
        models = await c.get("/v1/models")
        release.set()
        await asyncio.wait_for(boot.ready(), 5)
        after = await c.get("/threads")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (503, {"status": "starting"})
    assert threads.status_code == 503
    assert threads.headers["retry-after"] == "1"
    assert threads.json()["code"] == "starting"
    assert models.status_code == 503
    assert models.json()["error"]["type"] == "server_error"  # OpenAI error shape on /v1
    assert (after.status_code, after.text) == (200, "inner /threads")
    assert inner.lifespan == ["lifespan.startup"]

    assert (await life.shutdown())["type"] == "lifespan.shutdown.complete"
    assert inner.lifespan == ["lifespan.startup", "lifespan.shutdown"]
    assert stops == []


@pytest.mark.parametrize("broken", ["factory", "startup"])
async def test_bootstrap_stops_the_server_when_the_app_cannot_start(broken: str) -> None:
    def factory() -> Any:
        if broken == "factory":
            raise ValueError("bad storage url")
        return InnerApp(fail_startup=True)

    stops: list[str] = []
    boot = Bootstrap(factory, on_failure=lambda: stops.append("stop"))
    life = Lifespan(boot)
    await life.startup()

    with pytest.raises((ValueError, RuntimeError), match=r"bad storage url|database unreachable"):
        await asyncio.wait_for(boot.ready(), 5)
    assert stops == ["stop"]
    async with _client(boot) as c:
        assert (await c.get("/readyz")).status_code == 503  # never claims to be ready
    assert (await life.shutdown())["type"] == "lifespan.shutdown.complete"


def _serve(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FOREMAN_", "OPENAI_"))}
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("foreman")), "serve", "--port", str(port)],
        env={**clean, "FOREMAN_OFFLINE": "1", "FOREMAN_DATA_DIR": str(tmp_path), **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, f"http://127.0.0.1:{port}"


def _until(url: str, status: int, proc: subprocess.Popen[str], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == status:
                return
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered {status}")


def test_serve_is_live_then_ready_then_stops_cleanly(tmp_path: Path) -> None:
    proc, base = _serve(tmp_path)
    try:
        _until(base + "/healthz", 200, proc)
        _until(base + "/readyz", 200, proc)
        created = httpx.post(base + "/threads", json={}, timeout=10)
        assert created.status_code == 200
        assert created.json()["thread_id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM), err[-2000:]
    assert "Application shutdown complete." in err


def test_serve_exits_non_zero_when_storage_is_unreachable(tmp_path: Path) -> None:
    proc, _ = _serve(tmp_path, FOREMAN_DATABASE_URL="postgresql://127.0.0.1:1/none")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "foreman: could not start: cannot reach PostgreSQL at 127.0.0.1:1" in err
