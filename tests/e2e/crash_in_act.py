"""Run as a script by test_crash_in_act: pause the demo refund, approve it, and SIGKILL this
process inside the side-effecting node, after the ledger's STARTED and the sandbox write
but before DONE."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from typing import Any

import app.services
from app.api.auth import Principal
from app.config.settings import load_settings
from app.governance.resumers import InlineResume
from app.services import open_services
from tests.fakes import HashingEmbedder
from tools import demo

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"


def die_after_write(ctx: Any, args: Any) -> Any:
    original(ctx, args)
    os.kill(os.getpid(), signal.SIGKILL)


# The test process resumes with the same fast test embedder.
app.services.make_embedder = lambda config: HashingEmbedder()  # type: ignore[assignment]
original = next(t for t in demo.PACK.tools if t.name == "issue_refund").func
demo.PACK = dataclasses.replace(demo.PACK, tools=tuple(
    dataclasses.replace(t, func=die_after_write) if t.name == "issue_refund" else t
    for t in demo.PACK.tools))


async def main() -> None:
    async with open_services(load_settings()) as s:
        run = await s.runner.start(TASK, "support", tenant="acme", created_by="alice")
        print(run.thread_id, flush=True)
        await s.approvals.decide(Principal("bob", "acme", frozenset({"approver"}),
                                           groups=frozenset({"support-leads"})),
                                 run.interrupts[0].value["approval_id"], "approve",
                                 InlineResume(s.runner))


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(3)  # never reached: the refund kills the process
