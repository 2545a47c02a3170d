"""Crash points for the crash sweep: kill this process at the n-th pass of a durable write.

Each durable write and node boundary a run passes calls :func:`hit` with its site name
right after the write committed (``audit.append``: inside its transaction, before the
commit). The sweep (``tests/verify/test_crash_sweep.py``) first counts each site's passes
over a task, then kills a fresh process at every ``(site, n)`` and checks that a restart
finishes the run with nothing lost and nothing done twice.

Off in every normal run: the plan is read once at import and needs both
``FOREMAN_TESTING=1`` and ``FOREMAN_CRASH_AT=site:n`` (kill) or ``FOREMAN_CRASH_COUNT=PATH``
(append each pass's site name to PATH). With neither, :func:`hit` is one ``None`` check.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from app.errors import ConfigError

SITES = (
    "checkpoint.put",  # a superstep's checkpoint stored (a node boundary)
    "checkpoint.writes",  # a finished task's writes stored before its superstep ends
    "model.journal",  # a model call's journal and cost-ledger row
    "tool.started",  # the tool ledger's STARTED row, before the tool touches anything
    "tool.applied",  # the tool returned (its side effect landed), DONE not yet stored
    "tool.done",  # the tool ledger's DONE row with the result
    "event.append",  # a run event (and its audit entry) appended on its own
    "approval.create",  # a pending approval and its approval_requested event
    "approval.settle",  # an approval decided or expired, with its event
    "audit.append",  # an audit entry written, its transaction not yet committed
    "run.status",  # the run row's status / answer updated
    "run.claim",  # a run claimed by its executor (a new epoch), nothing of it executed yet
    "mcp.call",  # an MCP tool call about to be sent
    "mcp.answered",  # an MCP server answered a call, nothing recorded yet
)


class _Plan:
    """What this process does at each pass: count it, or die at the chosen one."""

    def __init__(self, site: str | None, at: int, count_file: str | None) -> None:
        self.site = site
        self.at = at
        self.count_file = count_file
        self.passes: dict[str, int] = {}

    def passed(self, site: str) -> None:
        n = self.passes.get(site, 0) + 1
        self.passes[site] = n
        if self.count_file is not None:
            with open(self.count_file, "a", encoding="utf-8") as f:
                f.write(site + "\n")
        if site == self.site and n == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


def _plan(env: dict[str, str] | os._Environ[str]) -> _Plan | None:
    if env.get("FOREMAN_TESTING") != "1":
        return None  # the second guard: a stray FOREMAN_CRASH_AT alone does nothing
    at, count = env.get("FOREMAN_CRASH_AT"), env.get("FOREMAN_CRASH_COUNT")
    if not at and not count:
        return None
    site, n = None, 0
    if at:
        site, _, raw = at.rpartition(":")
        if site not in SITES or not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"FOREMAN_CRASH_AT={at!r}: want SITE:N with N >= 1 and SITE "
                              f"one of {', '.join(SITES)}")
        n = int(raw)
    return _Plan(site, n, count or None)


_armed = _plan(os.environ)


def rearm() -> None:
    """Read the plan from the environment again: for a process forked after import (the
    sweep's fork server sets the child's environment, then calls this)."""
    global _armed
    _armed = _plan(os.environ)


def hit(site: str) -> None:
    """One pass of ``site``: nothing unless the sweep armed this process."""
    if _armed is not None:
        _armed.passed(site)


def watch_saver(saver: Any) -> None:
    """Make a checkpointer's stores passes of the checkpoint sites (when armed only)."""
    if _armed is None:
        return
    for method, site in (("aput", "checkpoint.put"), ("aput_writes", "checkpoint.writes")):
        setattr(saver, method, _after(getattr(saver, method), site))


def _after(fn: Callable[..., Awaitable[Any]], site: str) -> Callable[..., Awaitable[Any]]:
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = await fn(*args, **kwargs)
        hit(site)
        return out

    return wrapped
