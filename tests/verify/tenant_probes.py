"""Cross-tenant probes for the schemathesis sweep: one tenant's ids, used by another.

Every operation of ``/openapi.json`` that takes a thread, run or approval id in its path is
sent by the peer tenant with the owner's ids, and again with an unused id of the same shape.
The two answers must be the same (status and body, the id itself aside): the peer learns
nothing, not even that the object exists, and acts on nothing. The peer's listings must not
name any of the owner's ids, and the owner's objects must be as they were afterwards.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

PARAMS = {"thread_id", "run_id", "approval_id"}
ACTIVE = {"pending", "running"}
# Server-made ids are 14 characters; a client may name a thread "0", which any text holds.
MIN_NAME = 8
# Bodies that pass validation, so an answer cannot hide behind a 422. The writes are the
# ones that would do harm if they reached the owner's objects (a run on their thread, a
# decision on their approval); the owner's state is compared afterwards.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/threads/{thread_id}/history"): {},
    ("post", "/v1/approvals/{approval_id}/decision"): {"decision": "reject",
                                                       "message": "cross-tenant probe"},
}
RUN_BODY = {"assistant_id": "support",
            "input": {"messages": [{"role": "user", "content": "where is order O-5003?"}]}}
LISTINGS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/threads/search", {"limit": 1000}),
    ("GET", "/v1/runs?limit=200", None),
    ("GET", "/v1/approvals", None),
    ("GET", "/v1/approvals?status=pending", None),
    ("GET", "/v1/approvals?status=decided", None),
    ("GET", "/v1/approvals?status=expired", None),
    ("GET", "/v1/audit", None),
]


@dataclass
class Owned:
    """What one tenant owns: threads, (thread, run) pairs and approvals."""

    threads: list[str] = field(default_factory=list)
    runs: list[tuple[str, str]] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)

    def ids(self) -> set[str]:
        return {*self.threads, *(r for _, r in self.runs), *self.approvals}

    def without(self, other: Owned) -> Owned:
        """These objects less any whose id ``other`` uses too: clients choose thread ids,
        so two tenants may each have a thread "0", two objects under one name."""
        theirs = other.ids()
        return Owned([t for t in self.threads if t not in theirs],
                     [(t, r) for t, r in self.runs if t not in theirs and r not in theirs],
                     [a for a in self.approvals if a not in theirs])

    def names(self) -> set[str]:
        """The ids specific enough to look for in a response's text (as JSON strings)."""
        return {i for i in self.ids() if len(i) >= MIN_NAME}


@dataclass
class Probes:
    """Requests sent and the failures found, each a line saying what leaked where."""

    requests: int = 0
    failures: list[str] = field(default_factory=list)


def owned(c: httpx.Client, limit: int) -> Owned:
    """Up to ``limit`` threads of the caller's tenant with their runs, and its approvals."""
    threads = [t["thread_id"] for t in
               c.post("/threads/search", json={"limit": limit}).raise_for_status().json()]
    runs = [(t, r["run_id"]) for t in threads
            for r in c.get(f"/threads/{t}/runs").raise_for_status().json()]
    approvals = [a["id"] for a in c.get("/v1/approvals").raise_for_status().json()]
    return Owned(threads, runs, approvals)


def state(c: httpx.Client, mine: Owned) -> dict[str, Any]:
    """The owner's view of its objects, to compare before and after the probes: each
    thread's runs (a run still active is only counted) and each approval's status."""
    threads = {}
    for t in mine.threads:
        runs = c.get(f"/threads/{t}/runs").raise_for_status().json()
        threads[t] = {r["run_id"]: r["status"] if r["status"] not in ACTIVE else "active"
                      for r in runs}
    return {"threads": threads,
            "approvals": {a: c.get(f"/v1/approvals/{a}").json()["status"]
                          for a in mine.approvals}}


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Owner's objects that differ; a run that was active may have ended meanwhile."""
    out = []
    for t, runs in before["threads"].items():
        now = after["threads"][t]
        if set(now) != set(runs) or any(s != "active" and now[r] != s
                                         for r, s in runs.items()):
            out.append(t)
    return out + [a for a, s in before["approvals"].items() if after["approvals"][a] != s]


def operations(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) of every documented operation taking an owned id in its path."""
    ops = []
    for path, methods in schema["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        if names and names <= PARAMS:
            ops += [(m, path) for m in methods if m in {"get", "post", "put", "delete", "patch"}]
    return ops


def unused_like(value: str) -> str:
    """An id of the same shape (prefix and length) that no object has."""
    prefix, dash, tail = value.rpartition("-")
    return prefix + dash + secrets.token_hex(len(tail) // 2 + 1)[:max(len(tail), 8)]


def fillings(path: str, mine: Owned, per_op: int) -> Iterator[dict[str, str]]:
    """Path parameters naming the owner's objects, at most ``per_op`` per operation."""
    names = set(re.findall(r"{(\w+)}", path))
    if "approval_id" in names:
        pool: Iterable[dict[str, str]] = ({"approval_id": a} for a in mine.approvals)
    elif "run_id" in names:
        pool = ({"thread_id": t, "run_id": r} if "thread_id" in names else {"run_id": r}
                for t, r in mine.runs)
    else:
        pool = ({"thread_id": t} for t in mine.threads)
    for n, filled in enumerate(pool):
        if n >= per_op:
            return
        yield filled


def _send(c: httpx.Client, method: str, path: str, values: dict[str, str]) -> httpx.Response:
    url = path.format(**values)
    body = BODIES.get((method, path))
    if body is None and method == "post" and path.endswith(("/runs", "/runs/wait",
                                                             "/runs/stream")):
        body = RUN_BODY
    return c.request(method.upper(), url, json=body if method != "get" else None)


def _normal(r: httpx.Response, values: dict[str, str]) -> tuple[int, str]:
    # Whole ids only: a client may name a thread "l", which "detail" holds too.
    text = r.text
    for name, value in values.items():
        text = re.sub(rf"(?<![\w-]){re.escape(value)}(?![\w-])", "{" + name + "}", text)
    return r.status_code, text


def probe(owner: httpx.Client, peer: httpx.Client, schema: dict[str, Any], mine: Owned,
          per_op: int) -> Probes:
    """Send every id-taking operation as ``peer`` with ``owner``'s ids and with unused ids."""
    out = Probes()
    before = state(owner, mine)
    for method, path in operations(schema):
        for values in fillings(path, mine, per_op):
            theirs = _send(peer, method, path, values)
            fresh = {k: unused_like(v) for k, v in values.items()}
            unused = _send(peer, method, path, fresh)
            out.requests += 2
            if theirs.status_code >= 500 or _normal(theirs, values) != _normal(unused, fresh):
                out.failures.append(
                    f"{method.upper()} {path.format(**values)} as the other tenant: "
                    f"{theirs.status_code} {theirs.text[:200]!r}, an unused id: "
                    f"{unused.status_code} {unused.text[:200]!r}")
    names = mine.names()
    for method, url, body in LISTINGS:
        r = peer.request(method, url, json=body)
        out.requests += 1
        seen = sorted(i for i in names if f'"{i}"' in r.text)
        if seen:
            out.failures.append(f"{method} {url} as the other tenant lists {seen[:5]}")
    for thread in mine.threads[:per_op]:
        # The peer may make its own thread of that id, as of any id: a refusal would tell
        # it the name is taken. What it gets must be its own, empty thread.
        made = peer.post("/threads", json={"thread_id": thread})
        other = peer.post("/threads", json={"thread_id": unused_like(thread)})
        runs = peer.get(f"/threads/{thread}/runs")
        out.requests += 3
        if (made.status_code, other.status_code, runs.status_code) != (200, 200, 200) or (
                runs.json()):
            out.failures.append(f"POST /threads {{thread_id: {thread}}} as the other tenant: "
                                f"{made.status_code} {made.text[:200]!r} (an unused id: "
                                f"{other.status_code}), then its runs: {runs.text[:200]!r}")
    after = state(owner, mine)
    out.requests += 2 * (len(mine.threads) + len(mine.approvals))
    moved = changed(before, after)
    if moved:
        out.failures.append(f"the other tenant's probes changed {moved[:5]}")
    return out


def leaks_in_har(har: dict[str, Any], foreign: set[str]) -> tuple[int, list[str]]:
    """Entries of a HAR log (one tenant's fuzzing) whose responses name one of ``foreign``
    (another tenant's ids, as JSON strings); with the number of entries."""
    entries = har["log"]["entries"]
    found = []
    for e in entries:
        text = str(e["response"].get("content", {}).get("text", ""))
        hit = [i for i in foreign if f'"{i}"' in text]
        if hit:
            found.append(f"{e['request']['method']} {e['request']['url']} named {hit[:3]}")
    return len(entries), found
