"""The ``foreman worker`` command (registered in ``app.cli.main``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from app.config.settings import Settings


def worker(concurrency: Annotated[int | None, typer.Option(
               min=1, max=256, help="Runs this process executes at once "
                                    "(default: queue.worker_concurrency).")] = None,
           nice: Annotated[int | None, typer.Option(
               min=0, max=19, help="CPU niceness of this process, 0 (the API's) to 19 "
                                   "(default: queue.worker_nice).")] = None,
           config: Annotated[Path | None, typer.Option(
               "--config", help="Config file (foreman.yaml).")] = None) -> None:
    """Execute runs taken from the queue (distributed mode; needs FOREMAN_DATABASE_URL)."""
    from app.config.settings import load_settings
    from app.errors import ConfigError
    from app.observability.logs import configure_json_logging

    try:
        settings = load_settings(config)
    except ConfigError as e:
        typer.echo(f"foreman: bad config: {e}", err=True)
        raise typer.Exit(2) from e
    if not settings.database_url:
        typer.echo("foreman worker: no database to take runs from: set FOREMAN_DATABASE_URL "
                   "to the PostgreSQL that `foreman serve --workers 0` uses", err=True)
        raise typer.Exit(2)
    niceness = lower_priority(settings.queue.worker_nice if nice is None else nice)
    typer.echo(f"Foreman worker: concurrency {concurrency or settings.queue.worker_concurrency}"
               f", heartbeat {settings.queue.heartbeat_s:g}s, stall timeout "
               f"{settings.queue.stall_timeout_s:g}s, nice {niceness}")
    configure_json_logging()
    logging.getLogger("procrastinate").setLevel(logging.WARNING)  # a line per job otherwise
    from app.errors import ForemanError

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_work(settings, concurrency))
    except ForemanError as e:  # e.g. the database cannot be reached
        typer.echo(f"foreman worker: could not start: {e}", err=True)
        raise typer.Exit(1) from e


async def _work(settings: Settings, concurrency: int | None) -> None:
    from app.runs.worker import Worker
    from app.services import open_services

    async with open_services(settings) as services:
        await Worker(services, concurrency).run()


def lower_priority(nice: int) -> int:
    """Run this process at niceness ``nice`` or lower in priority (a start under ``nice -n
    15`` stays at 15), so an API replica or database on the same host gets the CPU first;
    on a host of its own it changes nothing. Returns the niceness now in force."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    return max(nice, current)

