"""Entry points of the processes the distributed-mode tests start (offline models, test
embedder, a test gate from ``FOREMAN_TEST_GATE``).

``python -m tests.e2e.cluster_node worker`` runs a worker; the API replicas are served by
uvicorn from :func:`create_api`. ``FOREMAN_TEST_SLOW_REFUND_S`` makes ``issue_refund`` write
its refund, leave a marker file ``refund-<pid>`` in the data dir and then wait that long
before returning, so a test can kill the worker between the write and the ledger's DONE.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import app.services
from app.config.settings import load_settings
from app.governance.policy.gate import PolicyEngine
from app.governance.policy.rules import PolicyConfig
from graphs.ports import PolicyGate
from tests.fakes import HashingEmbedder, RefundNeedsApproval
from tools import demo

app.services.make_embedder = lambda config: HashingEmbedder()  # type: ignore[assignment]


def gate() -> PolicyGate | None:
    """The test gate the environment names."""
    choice = os.environ.get("FOREMAN_TEST_GATE")
    if choice == "refund":
        return RefundNeedsApproval()
    if choice == "open":
        return PolicyEngine(PolicyConfig())
    if choice == "hold-threads":
        return HoldRefundsOnThreads()
    return None


class HoldRefundsOnThreads(RefundNeedsApproval):
    """Holds refunds for approval on threads named ``hold-*``; everything else runs."""

    def check(self, request: Any) -> Any:
        if request.thread_id.startswith("hold-"):
            return super().check(request)
        return PolicyEngine(PolicyConfig()).check(request)


def _slow_refunds(hold_s: float, data_dir: Path) -> None:
    original = next(t for t in demo.PACK.tools if t.name == "issue_refund").func

    def slow(ctx: Any, args: Any) -> Any:
        out = original(ctx, args)
        (data_dir / f"refund-{os.getpid()}").write_text(ctx.idempotency_key)
        time.sleep(hold_s)
        return out

    demo.PACK = dataclasses.replace(demo.PACK, tools=tuple(
        dataclasses.replace(t, func=slow) if t.name == "issue_refund" else t
        for t in demo.PACK.tools))


def create_api() -> Any:
    """The API replica's app (uvicorn ``--factory``)."""
    from app.api.app import create_app

    return create_app(load_settings(), gate=gate())


async def work() -> None:
    """Run one worker until it is stopped."""
    from app.observability.logs import configure_json_logging
    from app.runs.worker import Worker

    configure_json_logging()
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    settings = load_settings()
    hold = float(os.environ.get("FOREMAN_TEST_SLOW_REFUND_S") or 0)
    if hold:
        _slow_refunds(hold, settings.data_dir)
    async with app.services.open_services(settings, gate=gate()) as services:
        await Worker(services).run()


if __name__ == "__main__":
    if sys.argv[1:] != ["worker"]:
        sys.exit("usage: python -m tests.e2e.cluster_node worker")
    asyncio.run(work())
