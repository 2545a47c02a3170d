"""Run as a script by test_mcp_project: start the CRM credit run, approve it, and block in
the MCP write (the CRM server applies it and never answers) until the test SIGKILLs us."""

from __future__ import annotations

import asyncio
import sys

from app.api.auth import Principal
from app.config.settings import load_settings
from app.governance.resumers import InlineResume
from app.services import open_services
from tests.e2e.mcp_project import TASK


async def main() -> None:
    async with open_services(load_settings(sys.argv[1])) as s:
        run = await s.runner.start(TASK, "desk", created_by="alice")
        print(run.thread_id, flush=True)
        await s.approvals.decide(Principal("bob", "default", frozenset({"approver"}),
                                           groups=frozenset({"leads"})),
                                 run.interrupts[0].value["approval_id"], "approve",
                                 InlineResume(s.runner))


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(3)  # never reached: the test kills this process inside the write
