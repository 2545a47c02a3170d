"""``foreman models``: what the configured models can do (``check``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from app.llm.check import ModelReport

models_app = typer.Typer(help="The configured models.", no_args_is_help=True)
COLUMNS = ("key", "reachable", "tools", "json", "streaming", "price", "context")


@models_app.command("check")
def check(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
          model: Annotated[list[str] | None, typer.Option(
              "--model", help="Check only this model (repeatable).")] = None,
          config: Annotated[Path | None, typer.Option(
              "--config", help="Config file (foreman.yaml).")] = None) -> None:
    """Ask each configured model for a reply, a tool call round trip, JSON and a stream.

    Exit 0 when every check passed, 1 when one failed, 2 on bad config or usage.
    """
    from app.cli.cli_common import load_cli_settings as _settings
    from app.llm.check import check_models

    settings = _settings(config)
    unknown = [m for m in model or [] if m not in {e.name for e in settings.models}]
    if unknown:
        typer.echo(f"foreman models check: no model named {', '.join(unknown)} in models",
                   err=True)
        raise typer.Exit(2)
    reports = asyncio.run(check_models(settings, model))
    if as_json:
        typer.echo(json.dumps({"ok": all(r.ok for r in reports),
                               "offline": settings.offline,
                               "models": [r.to_json() for r in reports]}, indent=1))
    else:
        _table(reports, settings.offline)
    raise typer.Exit(0 if reports and all(r.ok for r in reports) else 1)


def _table(reports: list[ModelReport], offline: bool) -> None:
    import shutil

    from rich.console import Console
    from rich.table import Table

    # Piped output keeps whole lines: a check's reason is what the reader came for.
    console = Console(highlight=False, width=max(120, shutil.get_terminal_size().columns))
    if offline:
        console.print("FOREMAN_OFFLINE is set: runs use the built-in scripted models; "
                      "checking the configured real models anyway.")
    if not reports:
        console.print("No real model is configured (or none has a key): runs are offline, "
                      "on the built-in scripted models.")
        return
    table = Table("model", "roles", "check", "result", "detail")
    mark = {True: "[green]ok[/green]", False: "[red]FAIL[/red]", None: "[dim]-[/dim]"}
    for r in reports:
        for i, column in enumerate(COLUMNS):
            probe = r.probes[column]
            first = i == 0
            table.add_row(r.name if first else "", ", ".join(r.roles) or "-" if first else "",
                          column, mark[probe.ok], probe.detail, end_section=i == len(COLUMNS) - 1)
    console.print(table)
    bad = [r.name for r in reports if not r.ok]
    console.print(f"[red]{len(bad)} of {len(reports)} models failed: {', '.join(bad)}[/red]"
                  if bad else f"[green]All {len(reports)} models passed.[/green]")
