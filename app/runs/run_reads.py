"""What the run console reads: a tenant's runs with their figures, and one run in detail.

Reads only, on the app tables (portable SQL, SQLite and Postgres). The timeline itself is
the run's stored events (``Store.events``), shaped for display by :func:`console_event`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.governance.redact import redact
from app.observability.webhooks import ensure_schema
from app.storage.store import ACTIVE, RunRow, Store
from app.storage.thread_keys import local_id
from tools.catalog import get_tool
from tools.spec import ToolSpec

INDEXES = [
    "CREATE INDEX IF NOT EXISTS runs_tenant ON runs(tenant, created_at)",
    "CREATE INDEX IF NOT EXISTS model_calls_run ON model_calls(run_id)",
]


@dataclass(frozen=True)
class RunPage:
    """One page of a tenant's runs, newest first, with the total that matched."""

    runs: list[dict[str, Any]]
    total: int


class RunReads:
    """Console queries over the store, always within one tenant."""

    def __init__(self, store: Store,
                 tools: Callable[[str], ToolSpec | None] | None = None) -> None:
        self.store = store
        self.tools = tools  # the process's tool registry (packs, MCP), else the bundled ones
        store.db.schema_once("run_reads", INDEXES, self._create_indexes)
        ensure_schema(store.db)  # the console shows a run's webhook deliveries

    def _create_indexes(self) -> None:
        with self.store.db.tx() as c:
            for statement in INDEXES:
                c.run(statement)

    def page(self, tenant: str, *, status: str | None = None, team: str | None = None,
             limit: int = 25, offset: int = 0) -> RunPage:
        """The tenant's runs, filtered by status and team."""
        where, params = "tenant = ?", [tenant]
        if status is not None:
            where += " AND status = ?"
            params.append(status)
        if team is not None:
            where += " AND team = ?"
            params.append(team)
        db = self.store.db
        count = db.one(f"SELECT COUNT(*) AS n FROM runs WHERE {where}", params)  # noqa: S608
        rows = db.query(f"SELECT id FROM runs WHERE {where}"  # noqa: S608
                        " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                        (*params, limit, offset))
        runs = [r for r in (self.store.get_run(row["id"]) for row in rows) if r is not None]
        costs = self._costs([r.id for r in runs])
        waiting = self._pending([r.id for r in runs])
        return RunPage([summary(r, costs.get(r.id, 0.0), waiting.get(r.id, 0)) for r in runs],
                       int(count["n"]) if count else 0)

    def teams(self, tenant: str) -> list[str]:
        """Teams the tenant has runs of (for the team filter)."""
        rows = self.store.db.query("SELECT DISTINCT team FROM runs WHERE tenant = ?"
                                   " ORDER BY team", (tenant,))
        return [str(r["team"]) for r in rows]

    def detail(self, run: RunRow) -> dict[str, Any]:
        """One run: summary, latest plan with step status, approvals, cost by tier and agent."""
        calls = self.store.ledger(run.id)
        answered = [c for c in calls if c["outcome"] in ("ok", "cached")]
        approvals = self.store.run_approvals(run.id)
        events = self.store.events(run.id, 0, limit=100_000)
        return {
            **summary(run, sum(float(c["cost_usd"]) for c in calls),
                      sum(1 for a in approvals if a.status == "pending")),
            "ledger": ledger_view(events),
            "approvals": [{k: v for k, v in shown(a.as_json()).items() if k != "context"}
                          for a in approvals],
            "cost": {"by_tier": _group(answered, "tier"),
                     "by_agent": _group(answered, "agent", lambda c: c["agent"] or
                                        c["role"].split(".")[0])},
            "usage": {"model_calls": len(answered),
                      "prompt_tokens": sum(int(c["prompt_tokens"]) for c in answered),
                      "completion_tokens": sum(int(c["completion_tokens"]) for c in answered)},
            "last_seq": events[-1]["seq"] if events else 0,
        }

    def _costs(self, run_ids: list[str]) -> dict[str, float]:
        rows = self._per_run("COALESCE(SUM(cost_usd), 0)", "model_calls", "", run_ids)
        return {k: float(v) for k, v in rows.items()}

    def _pending(self, run_ids: list[str]) -> dict[str, int]:
        rows = self._per_run("COUNT(*)", "approvals", "status = 'pending' AND ", run_ids)
        return {k: int(v) for k, v in rows.items()}

    def _per_run(self, aggregate: str, table: str, condition: str,
                 run_ids: list[str]) -> dict[str, Any]:
        """One aggregate per run id; the SQL fragments are this module's constants."""
        if not run_ids:
            return {}
        marks = ", ".join("?" for _ in run_ids)
        sql = (f"SELECT run_id, {aggregate} AS v FROM {table}"  # noqa: S608
               f" WHERE {condition}run_id IN ({marks}) GROUP BY run_id")
        return {str(r["run_id"]): r["v"] for r in self.store.db.query(sql, run_ids)}


def summary(run: RunRow, cost_usd: float, pending_approvals: int,
            now: float | None = None) -> dict[str, Any]:
    """A run as the runs list shows it."""
    end = (time.time() if now is None else now) if run.status in ACTIVE else run.updated_at
    return {
        "run_id": run.id, "thread_id": local_id(run.thread_id), "status": run.status,
        "team": run.team,
        "task": redact(run.task), "requester": run.created_by, "started_at": run.created_at,
        "updated_at": run.updated_at, "duration_s": round(max(0.0, end - run.created_at), 3),
        "cost_usd": round(cost_usd, 6), "pending_approvals": pending_approvals,
        "mode": run.metadata.get("mode", "live"), "stop_reason": run.stop_reason,
        "final_answer": redact(run.final_answer) if run.final_answer else None,
        "error": redact(run.error) if run.error else None,
    }


def ledger_view(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest task ledger (facts, plan) with each step's status from the agent events."""
    ledger: Mapping[str, Any] = {}
    status: dict[str, str] = {}
    for e in events:
        if e["type"] in ("plan_created", "replanned") and e["data"].get("ledger"):
            ledger = e["data"]["ledger"]
        elif e["type"] == "agent_started":
            status[str(e["data"].get("step_id"))] = "running"
        elif e["type"] == "agent_finished":
            status[str(e["data"].get("step_id"))] = "done" if e["data"].get("ok") else "failed"
    plan = [{**step, "status": status.get(str(step.get("id")), "pending")}
            for step in ledger.get("plan") or []]
    return dict(shown({**{k: v for k, v in ledger.items() if k != "plan"}, "plan": plan}))


def console_event(event: Mapping[str, Any],
                  tools: Callable[[str], ToolSpec | None] | None = None) -> dict[str, Any]:
    """A stored event as the console shows it: free text and values redacted as the audit
    redacts them; tool results from tools whose output is third-party text marked."""
    data = dict(event["data"])
    if event["type"] == "tool_result":
        data["untrusted"] = _untrusted(str(data.get("tool")), tools)
    return {"seq": event["seq"], "type": event["type"], "ts": event["ts"],
            "data": shown(data)}


def shown(value: Any) -> Any:
    """``value`` redacted as the audit redacts free text, and secret-named fields blanked
    when they hold text (counters such as ``prompt_tokens`` stay readable)."""
    if isinstance(value, Mapping):
        return {str(k): redact({k: v})[str(k)] if isinstance(v, str) else shown(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shown(v) for v in value]
    return redact(value)


def _untrusted(tool: str, tools: Callable[[str], ToolSpec | None] | None) -> bool:
    try:
        spec = tools(tool) if tools is not None else get_tool(tool)
    except KeyError:
        spec = None
    # A tool no longer known: what it returned is treated as third-party text.
    return True if spec is None else spec.untrusted_output


def _group(calls: list[dict[str, Any]], name: str,
           key: Any = None) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for c in calls:
        k = str(key(c) if key else c[name] or "unknown")
        slot = out.setdefault(k, {name: k, "cost_usd": 0.0, "calls": 0, "tokens": 0})
        slot["cost_usd"] += float(c["cost_usd"])
        slot["calls"] += 1
        slot["tokens"] += int(c["prompt_tokens"]) + int(c["completion_tokens"])
    return sorted(({**v, "cost_usd": round(v["cost_usd"], 6)} for v in out.values()),
                  key=lambda v: -v["cost_usd"])
