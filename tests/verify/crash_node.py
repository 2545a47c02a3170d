"""The distributed-mode processes of the crash sweep, forked by ``crash_forker``: a
``foreman worker`` and a ``foreman serve --workers 0`` API replica.

Each is what the CLI command runs (``app.cli.worker_cli``, ``app.cli.main.serve``), with the
sweep's two test seams: the scripted models log every provider call's key (see
``crash_driver.LoggedProvider``), and the knowledge base embeds with the test hasher. The
environment carries the database URL, the queue's small heartbeat and stall timeout, the
API keys and the crash plan; ``argv`` is ``[CONFIG]`` for a worker, ``[CONFIG, PORT]`` for
an API replica.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import app.services
from app.config.settings import load_settings
from app.observability.logs import configure_json_logging
from tests.fakes import HashingEmbedder
from tests.verify.crash_driver import LoggedProvider, calls_log


def warm() -> None:
    """The imports a forked worker or API would pay otherwise (the fork server calls this)."""
    import uvicorn

    import app.api.app
    import app.runs.worker

    del uvicorn, app.api.app, app.runs.worker


def _prepare() -> None:
    os.environ.setdefault("FOREMAN_KNOWLEDGE__INGEST_BUNDLED", "false")
    app.services.make_embedder = lambda config: HashingEmbedder()  # type: ignore[assignment]
    configure_json_logging()
    logging.getLogger("procrastinate").setLevel(logging.WARNING)


async def _work(config: str) -> None:
    from app.runs.worker import Worker

    settings = load_settings(config)
    provider = LoggedProvider(calls_log(settings.data_dir), 0.0)
    async with app.services.open_services(settings, scripted=provider) as services:
        await Worker(services, concurrency=1).run()


def worker_main() -> None:
    """``foreman worker --concurrency 1`` (SIGTERM stops it gracefully)."""
    _prepare()
    asyncio.run(_work(sys.argv[1]))


def api_main() -> None:
    """``foreman serve --workers 0 --port PORT`` on loopback."""
    import uvicorn

    from app.api.app import create_app

    _prepare()
    settings = load_settings(sys.argv[1])
    assert not settings.queue.api_executes, "the sweep's API replica executes no runs"
    uvicorn.run(create_app(settings), host="127.0.0.1", port=int(sys.argv[2]),
                log_config=None, access_log=False, log_level="warning")
