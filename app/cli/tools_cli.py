"""``foreman init`` and ``foreman tools list``."""

from __future__ import annotations

import asyncio
import fnmatch
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.tooling.toolbox import Toolbox

tools_app = typer.Typer(help="The tools agents may call: bundled, packs, MCP servers.",
                        no_args_is_help=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Config file (foreman.yaml).")]


def init(directory: Annotated[Path, typer.Argument(help="Project folder to create.")],
         template: Annotated[str, typer.Option(
             help="demo (the bundled tools and teams) or blank (an MCP server of your own)")
         ] = "demo") -> None:
    """Write a new Foreman project folder that runs at once, offline."""
    from app.project.init import InitError, init_project

    if template not in ("demo", "blank"):
        typer.echo("foreman init: --template must be demo or blank", err=True)
        raise typer.Exit(2)
    try:
        written = init_project(directory, template)  # type: ignore[arg-type]
    except (InitError, OSError) as e:
        typer.echo(f"foreman init: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"Created a {template} project in {directory} ({len(written)} files):")
    for path in written:
        typer.echo(f"  {path.relative_to(directory)}")
    typer.echo(f"Next: cd {directory} && foreman tools list && foreman run \"...\" "
               "(see README.md there)")


def _load(config: Path | None) -> Settings:
    from app.config.settings import load_settings
    from app.errors import ConfigError

    try:
        return load_settings(config)
    except ConfigError as e:
        typer.echo(f"foreman: bad config: {e}", err=True)
        raise typer.Exit(2) from e


def describe(settings: Settings, box: Toolbox, team: str | None = None) -> list[dict[str, Any]]:
    """One row per tool: source, side effect, risk, the agents allowed it, matching rules."""
    from app.governance.policy.rules import compile_policy
    from app.tooling.mcp_tools import is_placeholder
    from app.tooling.toolbox import agent_tools

    reg = box.registry
    allowed: dict[str, list[str]] = {}
    for team_name, t in settings.teams.items():
        if team is not None and team_name != team:
            continue
        for agent in t.agents:
            for name in agent_tools(reg, agent.tools):
                allowed.setdefault(name, []).append(f"{team_name}.{agent.name}")
    rules = compile_policy(settings.policy, settings.source)
    rows = []
    for spec in reg.specs():
        if team is not None and spec.name not in allowed:
            continue
        matching = [r.config.name for r in rules if not r.config.tools or any(
            t == spec.name or fnmatch.fnmatchcase(spec.name, t) for t in r.config.tools)]
        waiting = is_placeholder(spec)  # its server is down: known only by the allow-list
        rows.append({"name": spec.name, "source": spec.source,
                     "side_effect": "unknown" if waiting else str(spec.side_effect),
                     "risk": "unknown" if waiting else str(spec.risk),
                     "idempotent": spec.idempotent, "agents": allowed.get(spec.name, []),
                     "policy_rules": matching, "description": spec.description.split("\n")[0]})
    return rows


@tools_app.command("list")
def list_tools(team: Annotated[str | None, typer.Option(help="Only this team's tools.")] = None,
               as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
               config: ConfigOpt = None) -> None:
    """Every tool: source, side effect, risk, which agents may call it, which rules match."""
    from app.errors import ConfigError
    from app.tooling.toolbox import open_toolbox

    settings = _load(config)
    if team is not None and team not in settings.teams:
        typer.echo(f"foreman tools list: no team named {team!r}; teams: "
                   f"{', '.join(settings.teams)}", err=True)
        raise typer.Exit(2)

    async def collect() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        box = await open_toolbox(settings)
        try:
            servers = [vars(s) for s in box.servers()]
            return describe(settings, box, team), servers
        finally:
            await box.aclose()

    try:
        rows, servers = asyncio.run(collect())
    except ConfigError as e:
        typer.echo(f"foreman: bad config: {e}", err=True)
        raise typer.Exit(2) from e
    if as_json:
        typer.echo(json.dumps({"servers": servers, "tools": rows}, indent=1))
        return
    _print(rows, servers)


def _print(rows: list[dict[str, Any]], servers: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    for s in servers:
        state = s["status"].upper() if s["status"] != "connected" else "connected"
        console.print(f"MCP {s['name']} ({s['transport']}): {state}, {s['tools']} tools"
                      + (f" - {s['error']}" if s["error"] else ""), markup=False)
    table = Table()
    for column in ("tool", "source", "side effect", "risk", "agents", "policy rules"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["source"], r["side_effect"], r["risk"],
                      ", ".join(r["agents"]) or "-", ", ".join(r["policy_rules"]) or "-")
    console.print(table)
