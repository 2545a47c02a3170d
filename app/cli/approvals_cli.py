"""``foreman approvals`` and ``foreman audit``: decide and verify on the local data dir.

They go through the same approvals service as the HTTP API, as the local operator (the
local-dev-mode admin), and resume the run in this process.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from app.config.settings import Settings
    from app.services import Services

approvals_app = typer.Typer(help="Approvals waiting for (or given by) a human.",
                            no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Config file (foreman.yaml).")]
IdArg = Annotated[str, typer.Argument(help="Approval id.")]


def _settings(config: Path | None) -> Settings:
    from app.cli.cli_common import load_cli_settings as load

    return load(config)


def _with_services(config: Path | None, work: Any) -> Any:
    from app.errors import ForemanError
    from app.services import open_services

    async def go() -> Any:
        async with open_services(_settings(config)) as services:
            return await work(services)

    try:
        return asyncio.run(go())
    except ForemanError as e:
        typer.echo(f"foreman: {e}", err=True)
        raise typer.Exit(1 if "stale" in str(e) or "already" in str(e) else 2) from e


def _line(row: Any) -> str:
    age = time.time() - row.created_at
    return (f"{row.id}  {row.status:<8} {row.kind:<6} {row.action:<16} risk={row.risk or '-':<6} "
            f"agent={row.agent or '-':<14} requester={row.requester or '-'}  "
            f"age={age / 60:.0f}m  rule={row.rule}")


@approvals_app.command("list")
def list_(status: Annotated[str | None, typer.Option(
              help="pending, decided or expired (default: all)")] = None,
          config: ConfigOpt = None) -> None:
    """Approvals, newest first."""
    from app.api.auth import LOCAL_ADMIN

    if status not in (None, "pending", "decided", "expired"):
        typer.echo("foreman approvals list: --status must be pending, decided or expired",
                   err=True)
        raise typer.Exit(2)

    async def work(s: Services) -> None:
        rows = s.approvals.find(LOCAL_ADMIN, status)
        for row in rows:
            typer.echo(_line(row))
        if not rows:
            typer.echo("no approvals")

    _with_services(config, work)


@approvals_app.command("show")
def show(approval_id: IdArg, config: ConfigOpt = None) -> None:
    """One approval with its context, as JSON."""
    from app.api.auth import LOCAL_ADMIN

    async def work(s: Services) -> None:
        typer.echo(json.dumps(s.approvals.get(LOCAL_ADMIN, approval_id).as_json(), indent=2,
                              default=str))

    _with_services(config, work)


def _decide(approval_id: str, decision: str, config: Path | None,
            args: dict[str, Any] | None = None, message: str = "") -> None:
    from rich.console import Console

    from app.api.auth import LOCAL_ADMIN
    from app.cli.cli_common import report_result as _report
    from app.cli.console import ProgressPrinter
    from app.governance.resumers import InlineResume

    console = Console(highlight=False)

    async def work(s: Services) -> None:
        resumer = InlineResume(s.runner, [ProgressPrinter(console)])
        await s.approvals.decide(LOCAL_ADMIN, approval_id, decision, resumer, args=args,
                                 message=message)
        console.print(f"Approval {approval_id}: {decision} recorded; run resumed.")
        if resumer.result is not None:
            _report(console, resumer.result)

    _with_services(config, work)


@approvals_app.command("approve")
def approve(approval_id: IdArg, amount_usd: Annotated[float | None, typer.Option(
                "--amount-usd", help="For a budget extension: how much to add.")] = None,
            config: ConfigOpt = None) -> None:
    """Approve and resume the run."""
    _decide(approval_id, "approve", config,
            args={"amount_usd": amount_usd} if amount_usd is not None else None)


@approvals_app.command("reject")
def reject(approval_id: IdArg,
           reason: Annotated[str, typer.Option("--reason", help="Why (the agent sees it).")],
           config: ConfigOpt = None) -> None:
    """Reject with a reason and resume the run."""
    _decide(approval_id, "reject", config, message=reason)


@approvals_app.command("edit")
def edit(approval_id: IdArg,
         args: Annotated[str, typer.Option("--args", help="The new arguments as JSON.")],
         config: ConfigOpt = None) -> None:
    """Approve with edited arguments (validated, and the policy checked again)."""
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as e:
        typer.echo(f"foreman approvals edit: --args is not JSON: {e}", err=True)
        raise typer.Exit(2) from e
    if not isinstance(parsed, dict):
        typer.echo("foreman approvals edit: --args must be a JSON object", err=True)
        raise typer.Exit(2)
    _decide(approval_id, "edit", config, args=parsed)


@approvals_app.command("respond")
def respond(approval_id: IdArg,
            message: Annotated[str, typer.Option("--message", help="Guidance for the agent.")],
            config: ConfigOpt = None) -> None:
    """Do not run the action; send guidance to the agent instead."""
    _decide(approval_id, "respond", config, message=message)


@audit_app.command("verify")
def verify(config: ConfigOpt = None,
           anchor: Annotated[Path | None, typer.Option(
               "--anchor", help="Heads saved earlier by `foreman audit head`.")] = None) -> None:
    """Recompute every tenant's hash chain; exit 1 at the first broken entry."""
    from app.governance.audit import Head

    anchors: dict[str, Head] | None = None
    if anchor is not None:
        try:
            saved = json.loads(anchor.read_text())
            anchors = {t: Head(t, int(h["seq"]), str(h["hash"])) for t, h in saved.items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            typer.echo(f"foreman audit verify: {anchor}: not a file of audit heads ({e})",
                       err=True)
            raise typer.Exit(2) from e

    async def work(s: Services) -> Any:
        return s.store.verify_audit(anchors=anchors)

    result = _with_services(config, work)
    typer.echo(json.dumps({"ok": result.ok, "entries": result.entries,
                           "first_bad_entry": result.first_bad_entry,
                           "tenant": result.tenant}))
    raise typer.Exit(0 if result.ok else 1)


@audit_app.command("head")
def head(config: ConfigOpt = None) -> None:
    """Print each tenant's newest entry as JSON: keep it outside the database as an anchor."""

    async def work(s: Services) -> Any:
        return s.store.audit_heads()

    heads = _with_services(config, work)
    typer.echo(json.dumps({t: {"seq": h.seq, "hash": h.hash} for t, h in heads.items()},
                          sort_keys=True))
