"""Serve liveness at once, the API once it is built.

Importing LangGraph, LangChain Core and Chroma and opening storage take seconds. ``Bootstrap``
is the ASGI app ``foreman serve`` hands uvicorn: it reports started immediately, builds the
real app (imports and lifespan) in the background, and until that is done answers
``/healthz`` with 200 (the process is up), ``/readyz`` with 503 and every other request with
503 and ``Retry-After``. Afterwards every request, ``/healthz`` included, goes to the real app.
If building it fails, the server is asked to stop and ``failed`` says why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPENAI_PREFIXES = ("/v1/chat", "/v1/models")


class Bootstrap:
    """An ASGI app that becomes ``factory()`` once that is built and started."""

    def __init__(self, factory: Callable[[], ASGIApp],
                 on_failure: Callable[[], None] | None = None,
                 prepare: Callable[[], Awaitable[None]] | None = None) -> None:
        self.factory = factory
        self.prepare = prepare  # runs in the loop before the factory (MCP servers spawn)
        self.on_failure = on_failure or _stop_server
        self.app: ASGIApp | None = None
        self.failed: BaseException | None = None
        self._starting: asyncio.Task[None] | None = None
        self._lifespan: asyncio.Task[None] | None = None
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await self._while_starting(scope, send)
        # A websocket before the app is up is closed without a handshake.

    async def ready(self) -> None:
        """Wait until the real app is serving (raises what stopped it, if it failed)."""
        if self._starting is not None:
            await asyncio.shield(self._starting)
        if self.failed is not None:
            raise self.failed

    # lifespan
    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._starting = asyncio.create_task(self._start(), name="foreman-start")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        try:
            if self.prepare is not None:
                await self.prepare()
            app = await asyncio.to_thread(self.factory)  # the imports run off the loop

            async def lifespan() -> None:
                await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                          self._to_app.get, self._from_app.put)

            self._lifespan = asyncio.create_task(lifespan(), name="foreman-lifespan")
            await self._to_app.put({"type": "lifespan.startup"})
            reply = await self._from_app.get()
            if reply["type"] != "lifespan.startup.complete":
                # The lifespan task ended with the cause; its message is only a traceback.
                [cause] = await asyncio.gather(self._lifespan, return_exceptions=True)
                if isinstance(cause, Exception):
                    raise cause
                raise RuntimeError(reply.get("message") or "the app failed to start")
            self.app = app
            log.info("foreman api serving")
        except Exception as e:  # the server must not stay up answering only /healthz
            self.failed = e
            log.error("foreman could not start: %s: %s", type(e).__name__, e)
            self.on_failure()

    async def _stop(self) -> None:
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
        if self.app is not None and self._lifespan is not None:
            await self._to_app.put({"type": "lifespan.shutdown"})
            await self._from_app.get()
            await asyncio.gather(self._lifespan, return_exceptions=True)

    # requests before the app is up
    async def _while_starting(self, scope: Scope, send: Send) -> None:
        path = scope.get("path", "")
        headers = [(b"content-type", b"application/json")]
        body: dict[str, Any]
        if path == "/healthz":
            status, body = 200, {"status": "ok"}
        elif path == "/readyz":
            status, body = 503, {"status": "starting"}
        else:
            status, message = 503, "Foreman is starting; retry in a moment"
            headers.append((b"retry-after", b"1"))
            body = ({"error": {"message": message, "type": "server_error", "param": None,
                               "code": "starting"}}
                    if path.startswith(OPENAI_PREFIXES)
                    else {"detail": message, "code": "starting"})
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def _stop_server() -> None:
    """Ask uvicorn to shut down, as Ctrl-C would."""
    os.kill(os.getpid(), signal.SIGINT)
