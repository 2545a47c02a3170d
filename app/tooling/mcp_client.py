"""Connections to MCP servers on the official ``mcp`` SDK: connect, list, call, reconnect.

Each server's session lives in a background task (the SDK's transports are context
managers); calls come from run tasks and are bounded by timeouts, so a server that is
down, slow or dying gives the caller an error instead of a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, CallToolResult, Tool

from app import crashpoints
from app.tooling.config import McpServerConfig, executable
from app.tooling.secrets import interpolate

log = logging.getLogger(__name__)

Status = Literal["connecting", "connected", "down", "closed"]


class McpUnavailable(Exception):
    """The server could not be reached; nothing was sent."""


class McpCallLost(Exception):
    """The request was sent but no answer came (timeout, connection lost mid-call)."""


@dataclass(frozen=True)
class ServerInfo:
    """What ``tools list``, the banner and /readyz show about one server."""

    name: str
    transport: str
    status: Status
    tools: int
    error: str = ""


class McpConnection:
    """One MCP server's session, held open by a background task."""

    def __init__(self, config: McpServerConfig, project_dir: Path) -> None:
        self.config = config
        self.project_dir = project_dir
        self.status: Status = "connecting"
        self.error = ""
        self.tools: list[Tool] = []
        self._session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._last_attempt = 0.0

    def info(self) -> ServerInfo:
        """Name, transport, status, tool count, last error."""
        return ServerInfo(self.config.name, self.config.transport, self.status,
                          len(self.tools), self.error)

    async def connect(self) -> None:
        """Start (or restart) the session and list the tools; never raises, never hangs."""
        async with self._lock:
            await self._shutdown()
            self._last_attempt = time.monotonic()
            self.status, self.error = "connecting", ""
            self._stop, self._ready = asyncio.Event(), asyncio.Event()
            self._task = asyncio.create_task(self._hold(), name=f"mcp:{self.config.name}")
            waiter = asyncio.create_task(self._ready.wait())
            done, _ = await asyncio.wait({waiter, self._task},
                                         timeout=self.config.connect_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if not self._ready.is_set():
                if not done:
                    self.error = f"no answer within {self.config.connect_timeout_s:g}s"
                await self._shutdown()
                self.status = "down"
                log.warning("mcp server unavailable",
                            extra={"server": self.config.name, "reason": self.error})

    async def _hold(self) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self.tools = await _all_tools(session)
                self._session, self.status = session, "connected"
                self._ready.set()
                await self._stop.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self.error = _reason(e)
        finally:
            self._session = None
            if self.status == "connected":
                self.status = "down"
                self.error = self.error or "connection closed"

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        c = self.config
        if c.command:
            exe = executable(c.command[0], self.project_dir)
            if exe is None:
                raise FileNotFoundError(f"command not found: {c.command[0]}")
            cwd = self.project_dir / c.cwd if c.cwd else self.project_dir
            env = {k: interpolate(v) for k, v in c.env.items()}
            params = StdioServerParameters(command=exe, args=c.command[1:], env=env, cwd=cwd)
            return stdio_client(params, errlog=_errlog())
        assert c.url is not None
        headers = {k: interpolate(v) for k, v in c.headers.items()}
        client = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(
            c.connect_timeout_s, read=max(c.call_timeout_s, 300.0)))
        return _owned(client, streamable_http_client(c.url, http_client=client))

    async def call(self, tool: str, arguments: dict[str, Any],
                   meta: dict[str, Any] | None = None) -> CallToolResult:
        """Call one tool; ``McpUnavailable`` (not sent) or ``McpCallLost`` (outcome unknown)."""
        session = self._session
        if session is None and time.monotonic() - self._last_attempt >= \
                self.config.reconnect_after_s and self.status != "closed":
            await self.connect()
            session = self._session
        if session is None:
            raise McpUnavailable(f"MCP server {self.config.name} is unavailable"
                                 + (f" ({self.error})" if self.error else ""))
        crashpoints.hit("mcp.call")
        try:
            result = await asyncio.wait_for(
                session.call_tool(tool, arguments, meta=meta),  # type: ignore[arg-type]
                timeout=self.config.call_timeout_s)
        except TimeoutError as e:
            raise McpCallLost(f"no answer from MCP server {self.config.name} within "
                              f"{self.config.call_timeout_s:g}s") from e
        except MCPError as e:
            if e.code != CONNECTION_CLOSED:
                raise  # the server answered with a protocol error: it is still there
            await self._drop()
            raise McpCallLost(f"MCP server {self.config.name} went away during the call") from e
        except Exception as e:  # transport failure: the session is no use any more
            await self._drop()
            raise McpCallLost(f"MCP server {self.config.name} went away during the call "
                              f"({_reason(e)})") from e
        if not isinstance(result, CallToolResult):
            raise ValueError(f"unexpected result type {type(result).__name__}")
        crashpoints.hit("mcp.answered")
        return result

    async def _drop(self) -> None:
        """Forget a broken session; the next call after ``reconnect_after_s`` reconnects."""
        self._session = None
        self.status, self.error = "down", self.error or "connection lost"
        self._last_attempt = time.monotonic()
        self._stop.set()

    async def _shutdown(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
        except (TimeoutError, Exception):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def close(self) -> None:
        """End the session (and a stdio server's process)."""
        async with self._lock:
            await self._shutdown()
            self.status = "closed"


async def _all_tools(session: ClientSession) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server paging forever must not hang the start
        page = await session.list_tools(
            params={"cursor": cursor} if cursor else None)  # type: ignore[arg-type]
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


@contextlib.asynccontextmanager
async def _owned(client: httpx2.AsyncClient,
                 inner: contextlib.AbstractAsyncContextManager[Any]) -> Any:
    async with client, inner as streams:
        yield streams


def _errlog() -> Any:
    # A server's stderr goes to ours unless FOREMAN_MCP_STDERR names a file.
    target = os.environ.get("FOREMAN_MCP_STDERR")
    return open(target, "a", encoding="utf-8") if target else sys.stderr


def _reason(e: BaseException) -> str:
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    text = str(e).splitlines()[0][:200] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
