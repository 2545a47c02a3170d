"""Helpers every ``foreman`` command shares: settings with a one-line config error, and the
end-of-run summary. They live below the commands so no command imports another's module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from app.storage.thread_keys import local_id

if TYPE_CHECKING:
    from rich.console import Console

    from app.config.settings import Settings
    from app.runs.runner import RunResult


def load_cli_settings(config: Path | None, **overrides: Any) -> Settings:
    """The settings of ``config`` with overrides; exit 2 with one line on a bad config."""
    from app.config.settings import load_settings
    from app.errors import ConfigError

    try:
        settings = load_settings(config)
    except ConfigError as e:
        typer.echo(f"foreman: bad config: {e}", err=True)
        raise typer.Exit(2) from e
    return settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def report_result(console: Console, result: RunResult) -> None:
    """How a run ended: waiting for whom, failed, not done, or its final answer."""
    console.print(f"\nThread {local_id(result.thread_id)} · run {result.run_id} · "
                  f"{result.status} · "
                  f"{result.model_calls} model calls · ${result.cost_usd:.4f}")
    if result.status == "interrupted":
        for p in result.interrupts:
            aid = p.value.get("approval_id")
            console.print(f"Waiting for approval {aid} "
                          f"({p.value.get('action_request', {}).get('action')}, rule "
                          f"{p.value.get('policy_rule')}). Decide it with: foreman approvals "
                          f"approve {aid} | reject {aid} --reason TEXT | edit {aid} --args "
                          "JSON (or in the inbox at /inbox)")
    elif result.status == "error" and result.final_answer is None:
        console.print(f"[red]Run failed: {result.error}[/red] (continue with "
                      f"foreman run --resume {local_id(result.thread_id)})")
    elif result.status == "error":  # finished, but without doing its task
        console.print(f"[red]Not done ({result.stop_reason}):[/red] {result.error}")
        console.print(result.final_answer, markup=False)
    else:
        console.print(f"[bold]Final answer[/bold] ({result.stop_reason}):")
        console.print(result.final_answer or "", markup=False)
