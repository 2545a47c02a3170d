"""Connections to MCP servers on the official ``mcp`` SDK: connect, list, call, reconnect.

Each server's session lives in a background task (the SDK's transports are context
managers); calls come from run tasks and are bounded by timeouts, so a server that is
down, slow or dying gives the caller an error instead of a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from app.runs import crashpoints
from app.tooling.config import McpServerConfig, executable
from app.tooling.secrets import interpolate

if TYPE_CHECKING:  # the SDK takes a second to import: only a server that connects needs it
    import httpx2
    from mcp.client.session import ClientSession
    from mcp_types import CallToolResult, Tool

log = logging.getLogger(__name__)

Status = Literal["connecting", "connected", "down", "closed"]


def import_sdk() -> None:
    """Import the MCP SDK now (a second's work), so a connect on the event loop finds it
    loaded; call it off the loop. Without MCP servers nothing needs it."""
    for name in ("mcp.client.session", "mcp.client.stdio", "mcp.client.streamable_http",
                 "tools.schema_args"):  # the last: jsonschema, for the servers' tool schemas
        importlib.import_module(name)


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
    """One MCP server's session, held open (and re-opened) by a background task.

    The task connects, lists the tools, then pings the server every ``health_interval_s``;
    when the session breaks (a stdio process that exited, a connection that closed, pings
    unanswered) the status turns ``down`` and the task reconnects with a backoff from
    ``reconnect_after_s`` doubling up to ``reconnect_max_s``. ``on_connected`` runs after
    every successful connect (the toolbox puts the server's tools in the registry then).
    """

    def __init__(self, config: McpServerConfig, project_dir: Path,
                 on_connected: Callable[[McpConnection], None] | None = None,
                 data_dir: Path | None = None) -> None:
        self.config = config
        self.project_dir = project_dir
        # ${FOREMAN_DATA_DIR} in env and headers: the data folder of this Foreman
        self.own = {"FOREMAN_DATA_DIR": str(data_dir)} if data_dir is not None else {}
        self.on_connected = on_connected
        self.status: Status = "connecting"
        self.error = ""
        self.tools: list[Tool] = []
        self.attempts = 0
        self._session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._wake = asyncio.Event()
        self._end = asyncio.Event()
        self._settled = asyncio.Event()
        self._last_attempt = 0.0

    def info(self) -> ServerInfo:
        """Name, transport, status, tool count, last error."""
        return ServerInfo(self.config.name, self.config.transport, self.status,
                          len(self.tools), self.error)

    def start(self) -> None:
        """Start the background task (it spawns a stdio server's process at once)."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._supervise(), name=f"mcp:{self.config.name}")

    async def connect(self) -> None:
        """Start if need be and wait for the first attempt's outcome; never raises or hangs."""
        self.start()
        if self.attempts == 0:
            await self._next_attempt(self._settled)

    async def _next_attempt(self, settled: asyncio.Event) -> None:
        """Wait for the attempt under way (or the next one) to succeed or fail."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled.wait(), self.config.connect_timeout_s + 6.0)

    def _settle(self) -> None:
        self.attempts += 1
        settled, self._settled = self._settled, asyncio.Event()
        settled.set()

    async def _supervise(self) -> None:
        failures = 0
        while not self._closed:
            self._wake.clear()
            self._last_attempt = time.monotonic()
            lasted = await self._attempt()
            if self._closed:
                break
            failures = 0 if lasted else failures + 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        base, cap = self.config.reconnect_after_s, self.config.reconnect_max_s
        if failures == 0:  # a session that had been up ended: try again soon
            return base
        return float(min(max(base, 0.5) * 2.0 ** (failures - 1), max(cap, base)))

    async def _attempt(self) -> bool:
        """One session: True when it was up a while before it ended."""
        ready, self._end = asyncio.Event(), asyncio.Event()
        hold = asyncio.create_task(self._hold(ready, self._end),
                                   name=f"mcp-session:{self.config.name}")
        waiters = [asyncio.create_task(e.wait()) for e in (ready, self._end)]
        try:
            done, _ = await asyncio.wait({*waiters, hold}, timeout=self.config.connect_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            hold.cancel()
            raise
        finally:
            for w in waiters:
                w.cancel()
        if not ready.is_set():
            if not done:
                self.error = f"no answer within {self.config.connect_timeout_s:g}s"
            await self._finish(hold, graceful=False)
            if not self._closed:
                self.status = "down"
                log.warning("mcp server unavailable",
                            extra={"server": self.config.name, "reason": self.error})
            self._settle()
            return False
        self._settle()
        up = time.monotonic()
        try:
            await asyncio.shield(hold)  # _hold keeps its own errors in self.error
        except asyncio.CancelledError:
            await self._finish(hold, graceful=True)
            raise
        if not self._closed:
            log.warning("mcp server lost", extra={"server": self.config.name,
                                                  "reason": self.error})
        return time.monotonic() - up >= 1.0

    async def _hold(self, ready: asyncio.Event, end: asyncio.Event) -> None:
        from mcp.client.session import ClientSession

        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self.tools = await _all_tools(session)
                self._session, self.status, self.error = session, "connected", ""
                log.info("mcp server connected", extra={"server": self.config.name,
                                                        "tools": len(self.tools)})
                if self.on_connected is not None:
                    self.on_connected(self)
                ready.set()
                await self._watch(session, end)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self.error = _reason(e)
        finally:
            self._session = None
            if self.status == "connected":
                self.status = "down"
                self.error = self.error or "connection closed"

    async def _watch(self, session: ClientSession, end: asyncio.Event) -> None:
        """Until ``end`` is set or the session breaks: ping every ``health_interval_s``."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        c = self.config
        misses = 0
        while not end.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(end.wait(), c.health_interval_s)
            if end.is_set():
                return
            try:
                await asyncio.wait_for(session.send_ping(), min(c.call_timeout_s, 5.0))
                misses = 0
            except TimeoutError:
                misses += 1
                if misses >= 2:
                    self.error = "no answer to pings"
                    return
            except MCPError as e:
                if e.code == CONNECTION_CLOSED:
                    self.error = "connection closed"
                    return
                misses = 0  # it answered, with an error: it is there
            except Exception as e:  # the transport broke under the ping
                self.error = f"connection lost ({_reason(e)})"
                return

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        c = self.config
        if c.command:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            exe = executable(c.command[0], self.project_dir)
            if exe is None:
                raise FileNotFoundError(f"command not found: {c.command[0]}")
            cwd = self.project_dir / c.cwd if c.cwd else self.project_dir
            env = {k: interpolate(v, self.own) for k, v in c.env.items()}
            params = StdioServerParameters(command=exe, args=c.command[1:], env=env, cwd=cwd)
            return stdio_client(params, errlog=_errlog())
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        assert c.url is not None
        headers = {k: interpolate(v, self.own) for k, v in c.headers.items()}
        client = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(
            c.connect_timeout_s, read=max(c.call_timeout_s, 300.0)))
        return _owned(client, streamable_http_client(c.url, http_client=client))

    async def call(self, tool: str, arguments: dict[str, Any],
                   meta: dict[str, Any] | None = None) -> CallToolResult:
        """Call one tool; ``McpUnavailable`` (not sent) or ``McpCallLost`` (outcome unknown).

        While the server is down, a call at least ``reconnect_after_s`` after the last
        attempt asks for one now and waits for it (bounded by ``connect_timeout_s``).
        """
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, CallToolResult

        session = self._session
        if session is None and self._task is not None and not self._closed and \
                time.monotonic() - self._last_attempt >= self.config.reconnect_after_s:
            settled = self._settled
            self._wake.set()
            await self._next_attempt(settled)
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
            self._drop("connection lost")
            raise McpCallLost(f"MCP server {self.config.name} went away during the call") from e
        except Exception as e:  # transport failure: the session is no use any more
            self._drop(f"connection lost ({_reason(e)})")
            raise McpCallLost(f"MCP server {self.config.name} went away during the call "
                              f"({_reason(e)})") from e
        if not isinstance(result, CallToolResult):
            raise ValueError(f"unexpected result type {type(result).__name__}")
        crashpoints.hit("mcp.answered")
        return result

    def _drop(self, why: str) -> None:
        """Forget a broken session; the background task ends it and reconnects."""
        if self._session is not None:
            self._session = None
            self.status, self.error = "down", why
        self._end.set()

    async def _finish(self, task: asyncio.Task[None], graceful: bool) -> None:
        """End a session task: a connected one is asked (its transport closes in order), one
        still connecting is cancelled."""
        self._end.set()
        if graceful:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task

    async def close(self) -> None:
        """End the session (and a stdio server's process) and stop reconnecting."""
        self._closed = True
        self._wake.set()
        self._end.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=8.0)
            except (TimeoutError, Exception):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._session = None
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
