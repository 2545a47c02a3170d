"""The console's read model on SQLite and Postgres: tenant-scoped pages, filters, figures,
the ledger's step status, and events redacted for display."""

from __future__ import annotations

from app.runs.run_reads import RunReads, console_event, ledger_view
from app.storage.store import LedgerRow, Store


def _run(store: Store, run_id: str, tenant: str, team: str, status: str,
         cost: float = 0.0) -> None:
    store.create_thread(f"t-{run_id}", tenant)
    store.create_run(run_id, f"t-{run_id}", team, f"task {run_id}", tenant=tenant,
                     created_by="alice")
    store.update_run(run_id, status=status)
    if cost:
        store.ledger_put(LedgerRow(
            run_id=run_id, call_key="plan", thread_id=f"t-{run_id}", tenant=tenant,
            role="manager.plan", agent=None, model="m-large", tier="large",
            route_reason="r", prompt_tokens=10, completion_tokens=5, cached_tokens=0,
            cost_usd=cost, latency_ms=1.0, outcome="ok"), None)


def test_run_reads_page_is_tenant_scoped_filtered_and_paginated(store: Store) -> None:
    for i in range(5):
        _run(store, f"r-{i}", "acme", "support" if i % 2 else "incident",
             "success" if i < 3 else "running", cost=0.5 * i)
    _run(store, "r-other", "globex", "support", "success", cost=9.0)
    reads = RunReads(store)

    page = reads.page("acme", limit=2)
    assert page.total == 5 and [r["run_id"] for r in page.runs] == ["r-4", "r-3"]
    assert page.runs[0]["cost_usd"] == 2.0 and page.runs[0]["requester"] == "alice"
    assert [r["run_id"] for r in reads.page("acme", limit=2, offset=4).runs] == ["r-0"]
    only = reads.page("acme", status="success", team="support")
    assert [r["run_id"] for r in only.runs] == ["r-1"] and only.total == 1
    assert reads.teams("acme") == ["incident", "support"]
    assert "r-other" not in {r["run_id"] for r in reads.page("acme", limit=100).runs}
    assert reads.page("nobody").total == 0


def test_run_reads_detail_counts_pending_approvals_and_splits_cost(store: Store) -> None:
    _run(store, "r-1", "acme", "support", "interrupted", cost=0.25)
    store.ledger_put(LedgerRow(
        run_id="r-1", call_key="r1/0/S1/billing/s0", thread_id="t-r-1", tenant="acme",
        role="specialist.billing", agent="billing", model="m-small", tier="small",
        route_reason="r", prompt_tokens=3, completion_tokens=2, cached_tokens=0,
        cost_usd=0.05, latency_ms=1.0, outcome="ok"), None)
    store.record_approval({
        "id": "ap-1", "interrupt_id": "i-1", "thread_id": "t-r-1", "run_id": "r-1",
        "tenant": "acme", "requester": "alice", "kind": "tool", "action": "issue_refund",
        "args": {"order_id": "O-1", "note": "mail ada@example.com"}, "args_sha256": "x",
        "agent": "billing", "rule": "refunds", "approver_group": None, "risk": "high",
        "description": "d", "context": {}, "status": "pending", "created_at": 1.0,
        "expires_at": None}, {"approval_id": "ap-1"})
    reads = RunReads(store)

    (row,) = reads.page("acme").runs
    assert row["pending_approvals"] == 1
    detail = reads.detail(store.get_run("r-1"))  # type: ignore[arg-type]
    assert detail["cost"]["by_tier"] == [
        {"tier": "large", "cost_usd": 0.25, "calls": 1, "tokens": 15},
        {"tier": "small", "cost_usd": 0.05, "calls": 1, "tokens": 5}]
    assert [a["agent"] for a in detail["cost"]["by_agent"]] == ["manager", "billing"]
    (approval,) = detail["approvals"]
    assert approval["args"]["note"] == "mail [REDACTED:email]" and "context" not in approval


def test_run_reads_ledger_view_marks_step_status() -> None:
    plan = [{"id": s, "agent": "a", "goal": "g", "depends_on": []} for s in ("S1", "S2", "S3")]
    events = [
        {"seq": 1, "type": "plan_created", "data": {"ledger": {"facts": {}, "plan": plan}}},
        {"seq": 2, "type": "agent_started", "data": {"step_id": "S1"}},
        {"seq": 3, "type": "agent_finished", "data": {"step_id": "S1", "ok": True}},
        {"seq": 4, "type": "agent_started", "data": {"step_id": "S2"}},
        {"seq": 5, "type": "agent_started", "data": {"step_id": "S3"}},
        {"seq": 6, "type": "agent_finished", "data": {"step_id": "S3", "ok": False}},
    ]
    view = ledger_view(events)
    assert [s["status"] for s in view["plan"]] == ["done", "running", "failed"]


def test_run_reads_console_event_redacts_and_marks_untrusted_output() -> None:
    shown = console_event({"seq": 7, "type": "tool_result", "ts": 1.0, "data": {
        "tool": "find_tickets", "ok": True,
        "result": {"body": "card 4111 1111 1111 1111, api_key=sk-abcdefghijkl",
                   "token": "secret-value", "prompt_tokens": 12}}})
    result = shown["data"]["result"]
    assert shown["data"]["untrusted"] is True
    assert "4111" not in result["body"] and "sk-abcdefghijkl" not in result["body"]
    assert result["token"] == "[REDACTED:secret]" and result["prompt_tokens"] == 12
    trusted = console_event({"seq": 8, "type": "tool_result", "ts": 1.0,
                             "data": {"tool": "lookup_order", "ok": True, "result": {}}})
    assert trusted["data"]["untrusted"] is False
