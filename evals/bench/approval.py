"""Figure 6: approval round trip through the HTTP service, from the decision to the run's
next event (read on the run's live SSE stream, ``GET /v1/runs/{id}/events``).

Runs of the bundled refund demo pause for approval (the policy in foreman.yaml holds refunds
above $50); each is then approved with ``POST /threads/{id}/runs`` and ``command.resume``,
one at a time, as an inbox would do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from evals.bench.server import TERMINAL, start_run

TEAM = "support"
REFUND = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
PAUSED = ("interrupted", *TERMINAL)


@dataclass
class RoundTrips:
    """Seconds from sending each decision to the response, and to the run's next event."""

    response: list[float] = field(default_factory=list)
    next_event: list[float] = field(default_factory=list)
    stored: list[float] = field(default_factory=list)  # the event's own ts, server clock
    first_types: list[str] = field(default_factory=list)
    not_paused: int = 0


async def _paused(c: httpx.AsyncClient, thread_id: str, run_id: str,
                  deadline: float) -> list[str]:
    """Interrupt ids waiting on the thread once its run pauses (empty if it never does)."""
    while time.monotonic() < deadline:
        run = (await c.get(f"/threads/{thread_id}/runs/{run_id}")).json()
        if run["status"] in PAUSED:
            break
        await asyncio.sleep(0.1)
    thread = (await c.get(f"/threads/{thread_id}")).json()
    return [i["id"] for items in (thread.get("interrupts") or {}).values() for i in items]


async def _last_seq(c: httpx.AsyncClient, run_id: str) -> int:
    r = await c.get(f"/v1/runs/{run_id}/events", params={"follow": "false"})
    ids = [line[3:].strip() for line in r.text.splitlines() if line.startswith("id:")]
    return int(ids[-1]) if ids else 0


async def _decide(c: httpx.AsyncClient, thread_id: str, run_id: str, interrupt_ids: list[str],
                  out: RoundTrips) -> None:
    """Approve, then read the run's stream after its last event before the decision (a
    paused run's stream ends at once, so it is opened once the decision is accepted; it
    replays what was stored meanwhile, so nothing is missed)."""
    after = await _last_seq(c, run_id)
    sent = time.time()
    r = await c.post(f"/threads/{thread_id}/runs", json={
        "assistant_id": TEAM,
        "command": {"resume": {i: {"decision": "approve"} for i in interrupt_ids}}})
    r.raise_for_status()
    out.response.append(time.time() - sent)
    async with c.stream("GET", f"/v1/runs/{run_id}/events",
                        params={"after": str(after)}) as stream:
        kind = ""
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind and kind != "approval_decided":
                out.next_event.append(time.time() - sent)
                out.stored.append(float(json.loads(line[5:])["ts"]) - sent)
                out.first_types.append(kind)
                return


async def round_trips(c: httpx.AsyncClient, runs: int, timeout_s: float) -> RoundTrips:
    """Pause ``runs`` refund runs, then approve them one by one; bounded by ``timeout_s``."""
    out = RoundTrips()
    deadline = time.monotonic() + timeout_s

    async def measure() -> None:
        started = await asyncio.gather(*(start_run(c, TEAM, REFUND) for _ in range(runs)))
        waiting = await asyncio.gather(*(_paused(c, t, r, deadline) for t, r in started))
        for (thread_id, run_id), ids in zip(started, waiting, strict=True):
            if not ids:
                out.not_paused += 1
                continue
            await _decide(c, thread_id, run_id, ids, out)

    with contextlib.suppress(TimeoutError):  # rows say how many were measured in time
        await asyncio.wait_for(measure(), max(1.0, deadline - time.monotonic()))
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def detail(trips: RoundTrips) -> dict[str, Any]:
    """What bench-results.json keeps about the round trips."""
    ms = [round(s * 1000, 2) for s in trips.next_event]
    return {"next_event_ms": ms,
            "decision_response_ms": [round(s * 1000, 2) for s in trips.response],
            "next_event_stored_ms": [round(s * 1000, 2) for s in trips.stored],
            "next_event_types": sorted(set(trips.first_types)),
            "runs_that_never_paused": trips.not_paused}
