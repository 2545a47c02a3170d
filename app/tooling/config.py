"""The ``tools:`` and ``offline:`` sections of foreman.yaml."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.spec import Risk, SideEffect

SERVER_NAME = r"^[a-z][a-z0-9_-]{0,39}$"


class PackConfig(BaseModel):
    """A Python tool pack: an entry point name (group ``foreman.tools``), ``demo``, or a
    module path (``mycompany.tools`` or ``module:attribute``), with its own settings."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict)


class ReconcileConfig(BaseModel):
    """A read tool on the same server that finds what a write did under its idempotency
    key: it is called with ``{key_arg: <key>}``; an error, ``null``/empty structured
    content or ``{"found": false}`` means nothing was written."""

    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1)
    key_arg: str = Field(default="idempotency_key", min_length=1)


class ToolOverride(BaseModel):
    """What config says about one MCP tool; it wins over the server's annotations."""

    model_config = ConfigDict(extra="forbid")

    side_effect: SideEffect | None = None
    risk: Risk | None = None
    idempotent: bool | None = None
    description: str | None = None
    reconcile: ReconcileConfig | None = None


class McpServerConfig(BaseModel):
    """One MCP server: ``command`` (stdio) or ``url`` (streamable HTTP), never both.

    ``${VAR}`` in ``env`` and ``headers`` comes from the environment at connect time; a
    relative ``cwd`` (default: the project folder) resolves against the project folder.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SERVER_NAME)
    command: list[str] | None = Field(default=None, min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = Field(default=None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    overrides: dict[str, ToolOverride] = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=15.0, gt=0, le=300)
    call_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_result_chars: int = Field(default=20_000, ge=200, le=1_000_000)
    reconnect_after_s: float = Field(default=5.0, ge=0, le=3600)
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600)  # background retry backoff cap
    health_interval_s: float = Field(default=10.0, gt=0, le=3600)  # ping a connected server
    required: bool = False  # a server that cannot connect at start stops Foreman

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        """How Foreman talks to it."""
        return "stdio" if self.command else "http"


class ToolsConfig(BaseModel):
    """Tool sources besides the built-in ``search_knowledge``: packs and MCP servers."""

    model_config = ConfigDict(extra="forbid")

    packs: list[str | PackConfig] = Field(default_factory=lambda: ["demo"])  # type: ignore[arg-type]
    mcp: list[McpServerConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> ToolsConfig:
        for kind, names in (("pack", [p.name for p in self.pack_configs()]),
                            ("mcp server", [m.name for m in self.mcp])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} names: {dupes}")
        return self

    def pack_configs(self) -> list[PackConfig]:
        """Every pack entry as a ``PackConfig``."""
        return [p if isinstance(p, PackConfig) else PackConfig(name=p) for p in self.packs]

    def server(self, name: str) -> McpServerConfig | None:
        """The MCP server of that name."""
        return next((m for m in self.mcp if m.name == name), None)


class OfflineConfig(BaseModel):
    """The project's own offline world: playbook files or folders the scripted models follow."""

    model_config = ConfigDict(extra="forbid")

    playbooks: list[str] = Field(default_factory=list)


def executable(command: str, project_dir: Path) -> str | None:
    """The program a stdio server runs: ``python`` means the Python running Foreman (so
    the ``mcp`` SDK is there); a relative path is the project's; else looked up on PATH."""
    if command in ("python", "python3"):
        return sys.executable
    if "/" in command:
        path = Path(command).expanduser()
        path = path if path.is_absolute() else project_dir / path
        return str(path) if path.is_file() else None
    return shutil.which(command)
