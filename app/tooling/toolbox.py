"""The process's tools: bundled, packs and MCP servers, built once at start into a registry."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.errors import ConfigError
from app.tooling.mcp_client import McpConnection, ServerInfo, import_sdk
from app.tooling.mcp_tools import placeholder, tool_specs
from app.tooling.packs import static_registry
from app.tooling.secrets import EnvFileSecrets
from tools.registry import DuplicateTool, ToolRegistry

if TYPE_CHECKING:
    from app.config.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Toolbox:
    """The registry plus the live MCP connections behind some of its tools."""

    registry: ToolRegistry
    secrets: EnvFileSecrets
    connections: list[McpConnection] = field(default_factory=list)

    def servers(self) -> list[ServerInfo]:
        """Each MCP server's status, in config order."""
        return [c.info() for c in self.connections]

    def connected(self, conn: McpConnection) -> None:
        """A server (re)connected: its listed tools replace what the registry had for it
        (placeholders while it was down, or an older list)."""
        try:
            self.registry.replace_source(f"mcp:{conn.config.name}", tool_specs(conn))
        except (DuplicateTool, ValueError) as e:
            conn.error = f"its tools were not added: {e}"
            log.error("mcp server tools refused", extra={"server": conn.config.name,
                                                         "reason": str(e)})
            return
        log.info("mcp server tools updated", extra={"server": conn.config.name,
                                                    "tools": len(conn.tools)})

    async def aclose(self) -> None:
        """Close every MCP session (stdio servers' processes end with them)."""
        await asyncio.gather(*(c.close() for c in self.connections), return_exceptions=True)


def start_connections(settings: Settings) -> list[McpConnection]:
    """Start connecting every configured MCP server now (stdio processes spawn at once);
    ``open_toolbox`` adopts them. Needs a running event loop."""
    data_dir = settings.data_dir.resolve()
    if settings.tools.mcp:  # ${FOREMAN_DATA_DIR} exists when the servers start
        data_dir.mkdir(parents=True, exist_ok=True)
    connections = [McpConnection(c, settings.project_dir, data_dir=data_dir)
                   for c in settings.tools.mcp]
    for conn in connections:
        conn.start()
    return connections


async def open_toolbox(settings: Settings,
                       connections: list[McpConnection] | None = None) -> Toolbox:
    """Load packs, connect every MCP server concurrently, check the teams' tool lists.

    ``connections`` are ones ``start_connections`` began earlier (``foreman serve`` starts
    them before its own imports). A server that cannot connect is reported (``servers()``)
    and keeps reconnecting in the background; until it is up, the tools the agents name
    exactly on it answer with a clear error. ``required: true`` on it makes that a
    ``ConfigError`` instead.
    """
    try:
        reg = static_registry(settings)
    except BaseException:
        await asyncio.gather(*(c.close() for c in connections or []), return_exceptions=True)
        raise
    if connections is None and settings.tools.mcp:
        await asyncio.to_thread(import_sdk)  # off the loop, before the sessions need it
    conns = connections if connections is not None else start_connections(settings)
    box = Toolbox(reg, EnvFileSecrets(settings.project_dir), conns)
    try:
        await asyncio.gather(*(c.connect() for c in conns))
        for i, conn in enumerate(conns):
            where = f"{settings.source}: tools.mcp.{i}"
            if conn.status != "connected":
                if conn.config.required:
                    raise ConfigError(f"{where}: server {conn.config.name!r} is unreachable "
                                      f"({conn.error})")
                reg.add_all([placeholder(conn, name) for name in _named_on(settings, conn)],
                            f"mcp:{conn.config.name}")
            else:
                try:
                    reg.add_all(tool_specs(conn), f"mcp:{conn.config.name}")
                except (DuplicateTool, ValueError) as e:
                    raise ConfigError(f"{where}: {e}") from e
            conn.on_connected = box.connected  # later (re)connects update the registry
        check_tools(settings, box)
    except BaseException:
        await box.aclose()
        raise
    return box


def _named_on(settings: Settings, conn: McpConnection) -> list[str]:
    """Exact tool names (no globs) the agents' allow-lists give on this server."""
    prefix = conn.config.name + "."
    names = [t for team in settings.teams.values() for a in team.agents for t in a.tools
             if t.startswith(prefix) and not any(ch in t for ch in "*?[")]
    return list(dict.fromkeys(names))


def down_servers(box: Toolbox) -> set[str]:
    """Names of configured servers that have not connected (their tools are unknown)."""
    return {c.config.name for c in box.connections if c.status != "connected"}


def check_tools(settings: Settings, box: Toolbox) -> None:
    """Every agent's tool names and globs, policy rule tools and disabled tools resolve.

    Names under a server that is down are let through (the agent gets a clear error when
    it calls them); a glob or name that matches nothing anywhere else is a ``ConfigError``.
    """
    from graphs.ports import BUDGET_ACTION

    reg, down = box.registry, down_servers(box)
    servers = {m.name for m in settings.tools.mcp}
    src = settings.source

    def resolve(pattern: str, where: str) -> None:
        if reg.expand(pattern) or pattern == BUDGET_ACTION:
            return
        prefix = pattern.split(".", 1)[0] if "." in pattern else None
        if prefix is not None and prefix not in servers and not any(
                n.startswith(prefix + ".") for n in reg.names()):
            raise ConfigError(f"{where}: unknown MCP server {prefix!r} in {pattern!r}")
        if prefix in down:
            return
        if any(ch in pattern for ch in "*?["):
            raise ConfigError(f"{where}: glob {pattern!r} matches no tool")
        raise ConfigError(f"{where}: unknown tool {pattern!r}")

    for team_name, team in settings.teams.items():
        for i, agent in enumerate(team.agents):
            for tool in agent.tools:
                resolve(tool, f"{src}: teams.{team_name}.agents.{i}.tools")
    for i, rule in enumerate(settings.policy.rules):
        for tool in rule.tools:
            resolve(tool, f"{src}: policy.rules.{i} ({rule.name}).tools")
    for tool in settings.runs.disabled_tools:
        if any(ch in tool for ch in "*?["):
            raise ConfigError(f"{src}: runs.disabled_tools: name tools exactly, not {tool!r}")
        resolve(tool, f"{src}: runs.disabled_tools")


def agent_tools(registry: ToolRegistry, patterns: list[str]) -> list[str]:
    """An allow-list's names and globs expanded to tool names (first mention wins order)."""
    out: list[str] = []
    for pattern in patterns:
        for name in registry.expand(pattern):
            if name not in out:
                out.append(name)
    return out
