"""The ``foreman`` command. Heavy imports happen inside commands so ``--help`` stays instant."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast
from urllib.parse import urlsplit, urlunsplit

import typer

from app.cli.approvals_cli import approvals_app, audit_app
from app.cli.cli_common import load_cli_settings as _settings
from app.cli.cli_common import report_result as _report
from app.cli.kb_cli import kb_app
from app.cli.models_cli import models_app
from app.cli.tools_cli import init, tools_app
from app.cli.worker_cli import worker

if TYPE_CHECKING:
    from rich.console import Console

    from app.config.settings import PolicyName, Settings
    from app.runs.runner import RunResult
    from app.services import Services

app = typer.Typer(help="Foreman: a governed, durable, cost-aware agent orchestrator.",
                  no_args_is_help=True, add_completion=False)
sandbox_app = typer.Typer(help="The bundled systems-of-record sandbox.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(kb_app, name="kb")
app.add_typer(approvals_app, name="approvals")
app.add_typer(audit_app, name="audit")
app.add_typer(models_app, name="models")
app.command("worker")(worker)
app.add_typer(tools_app, name="tools")
app.command("init")(init)

# The names of app.config.settings.PolicyName, repeated so --help needs no pydantic import.
POLICIES = ("routed", "all-small", "all-large")
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Config file (foreman.yaml).")]


@app.command()
def serve(host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
          port: Annotated[int | None, typer.Option(help="Port.")] = None,
          workers: Annotated[int | None, typer.Option(
              min=0, max=256, help="Runs this process executes at once; 0: none, they go to "
                                   "the queue for `foreman worker` (needs FOREMAN_DATABASE_URL)."
          )] = None,
          config: ConfigOpt = None) -> None:
    """Start the HTTP API on 127.0.0.1:8000 (offline when no provider key is configured)."""
    import uvicorn

    from app.api.auth import KeyRing, is_loopback
    from app.api.bootstrap import ASGIApp, Bootstrap
    from app.errors import ConfigError
    from app.llm.router import is_offline
    from app.observability.logs import configure_json_logging

    settings = _with_workers(_settings(config), workers)
    host = host or settings.server.host
    port = port or int(os.environ.get("PORT") or settings.server.port)
    try:
        keyring = KeyRing.from_settings(settings)
    except ConfigError as e:
        typer.echo(f"foreman: bad config: {e}", err=True)
        raise typer.Exit(2) from e
    if keyring.local_mode and not is_loopback(host):
        typer.echo(f"foreman: refusing to bind {host} without API keys (auth.api_keys); "
                   "local dev mode serves loopback only", err=True)
        raise typer.Exit(2)
    base = f"http://{host}:{port}"
    typer.echo("Models: OFFLINE - built-in scripted models (no provider key configured)"
               if is_offline(settings)
               else "Models: " + "; ".join(f"{r} → {m}" for r, m in settings.routing.roles.items())
               + " (which answer: GET /readyz, probed at start without blocking it)")
    typer.echo(f"Foreman API: {base} (OpenAI-compatible at {base}/v1, "
               f"LangGraph threads/runs at {base}/threads, health {base}/healthz)")
    typer.echo(f"Inbox: {base}/inbox   Docs: {base}/docs   Metrics: {base}/metrics")
    typer.echo(f"Storage: {_storage_line(settings)}")
    typer.echo("Runs: executed in this process" if settings.queue.api_executes
               else "Runs: queued for `foreman worker` processes (this API executes none)")
    if settings.tools.mcp:
        typer.echo("MCP servers: " + ", ".join(f"{m.name} ({m.url or ' '.join(m.command or [])})"
                                               for m in settings.tools.mcp)
                   + f" - connecting; status at {base}/readyz")
    typer.echo("Auth: LOCAL DEV MODE - no API keys configured; loopback only, every caller "
               "is a local admin" if keyring.local_mode
               else f"Auth: {len(settings.auth.api_keys)} API keys"
               + (f", JWT from {settings.auth.jwt.issuer}" if settings.auth.jwt else ""))
    configure_json_logging()

    early: list[Any] = []  # MCP connections started before the app's imports

    async def prepare() -> None:
        if settings.tools.mcp:  # server processes start while Foreman imports the rest
            toolbox = await asyncio.to_thread(importlib.import_module, "app.tooling.toolbox")
            await asyncio.to_thread(toolbox.import_sdk)
            early.append(toolbox.start_connections(settings))

    def build() -> ASGIApp:
        from app.api.app import create_app  # LangGraph, Chroma: imported after the bind

        return create_app(settings, connections=early[0] if early else None)

    boot = Bootstrap(build, prepare=prepare)
    uvicorn.run(boot, host=host, port=port, log_config=None, access_log=False,
                log_level="info")
    if boot.failed is not None:
        bad_config = isinstance(boot.failed, ConfigError)
        typer.echo(f"foreman: {'bad config' if bad_config else 'could not start'}: "
                   f"{boot.failed}", err=True)
        raise typer.Exit(2 if bad_config else 1)


def _with_workers(settings: Settings, workers: int | None) -> Settings:
    """``serve --workers N``: N runs at once in this process, or 0 for API-only replicas."""
    if workers is None:
        return settings
    if workers == 0:
        if not settings.database_url:
            typer.echo("foreman serve: --workers 0 leaves runs to `foreman worker` processes, "
                       "which share a PostgreSQL queue: set FOREMAN_DATABASE_URL", err=True)
            raise typer.Exit(2)
        return settings.model_copy(update={
            "queue": settings.queue.model_copy(update={"api_executes": False})})
    return settings.model_copy(update={
        "runs": settings.runs.model_copy(update={"max_concurrent": workers}),
        "queue": settings.queue.model_copy(update={"api_executes": True})})


def _storage_line(settings: Settings) -> str:
    from urllib.parse import urlsplit

    if settings.database_url:
        url = urlsplit(settings.database_url)
        return (f"Postgres at {url.hostname}:{url.port or 5432}{url.path} "
                "(checkpoints and app tables)")
    return f"SQLite under {settings.data_dir.resolve()}"


@app.command()
def run(task: Annotated[str | None, typer.Argument(help="What the team should do.")] = None,
        team: Annotated[str | None, typer.Option(help="Team to run (default: config).")] = None,
        resume: Annotated[str | None, typer.Option(
            "--resume", metavar="THREAD_ID", help="Continue a thread's unfinished run.")] = None,
        offline: Annotated[bool, typer.Option(help="Use the built-in scripted models.")] = False,
        no_input: Annotated[bool, typer.Option(
            "--no-input", help="Never prompt; leave approvals pending.")] = False,
        quiet: Annotated[bool, typer.Option(help="Only print the final answer.")] = False,
        policy: Annotated[str | None, typer.Option(
            help="Routing policy: routed, all-small or all-large (default: config).")] = None,
        budget_usd: Annotated[float | None, typer.Option(
            "--budget-usd", min=0.0, help="USD budget of this run (default: config).")] = None,
        shadow: Annotated[bool, typer.Option(
            "--shadow", help="Run for real, but write tools only record what they would do.")
        ] = False,
        config: ConfigOpt = None) -> None:
    """Run TASK with a team, showing live progress, and print the final answer."""
    from rich.console import Console

    if (task is None) == (resume is None):
        typer.echo("foreman run: give a TASK or --resume THREAD_ID (not both)", err=True)
        raise typer.Exit(2)
    if policy is not None and policy not in POLICIES:
        typer.echo(f"foreman run: --policy must be one of {', '.join(POLICIES)}", err=True)
        raise typer.Exit(2)
    settings = _settings(config, offline=True if offline else None)
    if policy is not None:
        settings = settings.with_policy(cast("PolicyName", policy))
    console = Console(stderr=False, highlight=False)
    from app.errors import ConfigError

    try:
        result = asyncio.run(_run(settings, console, task, team, resume, no_input, quiet,
                                  budget_usd, shadow))
    except ConfigError as e:  # e.g. an MCP server's tools do not match the teams' lists
        typer.echo(f"foreman: bad config: {e}", err=True)
        raise typer.Exit(2) from e
    raise typer.Exit(0 if result.status in {"success", "interrupted"} else 1)


async def _run(settings: Settings, console: Console, task: str | None, team: str | None,
               resume: str | None, no_input: bool, quiet: bool,
               budget_usd: float | None = None, shadow: bool = False) -> RunResult:
    from app.cli.console import ProgressPrinter
    from app.errors import ForemanError
    from app.services import open_services

    listeners = [] if quiet else [ProgressPrinter(console)]
    async with open_services(settings) as services:
        if services.offline and not quiet:
            console.print("[yellow]Offline mode: built-in scripted models "
                          "(no provider key configured).[/yellow]")
        if not quiet:
            console.print(f"Routing policy: {settings.routing.policy}")
        try:
            if resume:
                # The thread's id as printed (or its key): the local tenant's thread.
                key = services.store.key_of("default", resume)
                result = await services.runner.resume(key, listeners=listeners)
            else:
                assert task is not None
                result = await services.runner.start(task, team, listeners=listeners,
                                                     budget_usd=budget_usd, shadow=shadow,
                                                     created_by="local")
            while result.status == "interrupted" and not no_input:
                result = await _ask(services, console, result, listeners)
        except ForemanError as e:
            console.print(f"[red]foreman: {e}[/red]")
            raise typer.Exit(2) from e
    _report(console, result)
    return result


async def _ask(services: Services, console: Console, result: RunResult,
               listeners: list[Any]) -> RunResult:
    """Ask at the prompt, then decide through the approvals service like any approver."""
    from app.api.auth import LOCAL_ADMIN
    from app.governance.resumers import InlineResume

    resumer = InlineResume(services.runner, listeners)
    for pending in result.interrupts:
        approval_id = str(pending.value.get("approval_id"))
        req = pending.value.get("action_request", {})
        console.print(f"[bold yellow]Approval needed[/bold yellow] ({approval_id}): "
                      f"{req.get('action')} {json.dumps(req.get('args'))}\n  "
                      f"{pending.value.get('description')}", markup=True)
        answer = typer.prompt("approve / reject", default="reject").strip().lower()
        message, args = "", None
        if answer.startswith("a"):
            decision = "approve"
            if pending.value.get("kind") == "budget":
                args = {"amount_usd": typer.prompt("extend the budget by (USD)", type=float)}
        else:
            decision = "reject"
            message = typer.prompt("reason", default="rejected at the prompt")
        await services.approvals.decide(LOCAL_ADMIN, approval_id, decision, resumer,
                                        args=args, message=message)
        if resumer.result is not None and resumer.result.status != "interrupted":
            break
    if resumer.result is None:
        raise RuntimeError("no decision was recorded")
    return resumer.result


@app.command("eval")
def eval_(suite: Annotated[Path | None, typer.Option(
              "--suite", "--scenarios", help="Scenario directory (a project's scenarios/).")
          ] = None,
          policy: Annotated[list[str] | None, typer.Option(
              help="Routing policy to evaluate (repeatable; default: all three).")] = None,
          seeds: Annotated[int, typer.Option(min=1, max=16, help="Seeded variants per run.")] = 4,
          report: Annotated[Path, typer.Option(help="Report directory.")] = Path("eval-report"),
          filter_: Annotated[str | None, typer.Option(
              "--filter", help="Glob or substring on scenario id or category.")] = None,
          workers: Annotated[int, typer.Option(min=0, max=8, help="Worker processes.")] = 2,
          write_baseline: Annotated[bool, typer.Option(
              "--write-baseline", help="Measure the full suite and the CI subset and "
              "rewrite evals/baseline.json and evals/baseline-ci.json.")] = False,
          ci: Annotated[bool, typer.Option(
              "--ci", help="The fast subset against evals/baseline-ci.json.")] = False,
          live: Annotated[bool, typer.Option(
              "--live", help="Against the configured real models (docs/models.md).")] = False,
          config: ConfigOpt = None) -> None:
    """Run the offline eval suite, write reports and fail when the baseline gate fails."""
    if live:
        from evals.live import live_eval

        raise typer.Exit(live_eval(_settings(config), suite, report, filter_))
    bad = [p for p in policy or [] if p not in POLICIES]
    if bad:
        typer.echo(f"foreman eval: --policy must be one of {', '.join(POLICIES)}", err=True)
        raise typer.Exit(2)
    if config is not None:  # a project's own teams, tools and playbooks (worker processes too)
        _settings(config)
        os.environ["FOREMAN_EVAL_CONFIG"] = str(config.resolve())
    from evals.cli import run_ci, run_eval, write_baselines

    if write_baseline:
        raise typer.Exit(write_baselines(report, workers))
    if ci:
        raise typer.Exit(run_ci(report, workers))
    raise typer.Exit(run_eval(suite, cast("list[PolicyName]", policy) or None, seeds, report,
                              filter_, workers))


@sandbox_app.command("reset")
def sandbox_reset(config: ConfigOpt = None) -> None:
    """Restore the sandbox database to its seeded demo state."""
    from tools import sandbox

    target = _sandbox_target(_settings(config))
    sandbox.reset(target)
    typer.echo(f"sandbox reset: {redact_url(target)}")


@sandbox_app.command("show")
def sandbox_show(table: Annotated[str, typer.Argument(help="Table to print.")],
                 config: ConfigOpt = None) -> None:
    """Print a sandbox table as JSON lines."""
    from tools import sandbox

    target = _sandbox_target(_settings(config))
    if table not in sandbox.TABLES:
        typer.echo(f"unknown table {table!r}; tables: {', '.join(sandbox.TABLES)}", err=True)
        raise typer.Exit(2)
    conn = sandbox.connect(target)
    try:
        for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 - checked name
            typer.echo(json.dumps(dict(row)))
    finally:
        conn.close()


def _sandbox_target(settings: Settings) -> str:
    """Where the demo pack keeps its sandbox under this config (file or database URL)."""
    from app.tooling.packs import static_registry

    demo = static_registry(settings).source_settings("pack:demo")
    return str(demo.get("db_url") or demo.get("db_path") or settings.data_dir / "sandbox.db")


def redact_url(target: str) -> str:
    """A sandbox target fit to print: a database URL loses its password."""
    parts = urlsplit(target)
    if not parts.scheme.startswith("postgres") or not parts.password:
        return target
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
