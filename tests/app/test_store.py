"""One conformance suite for the app store, run on SQLite and on the machine's PostgreSQL."""

from __future__ import annotations

import dataclasses

from app.store import LedgerRow, Store


def test_store_threads_are_tenant_scoped_and_ids_unique(store: Store) -> None:
    assert store.create_thread("t-1", "acme", {"k": "v"})
    assert not store.create_thread("t-1", "globex")
    store.create_thread("t-2", "globex")
    store.touch_thread("t-1", {"more": 1})

    thread = store.get_thread("t-1")
    assert thread is not None and thread.tenant == "acme"
    assert thread.metadata == {"k": "v", "more": 1}
    assert [t.id for t in store.search_threads("acme")] == ["t-1"]
    assert store.get_thread("nope") is None


def test_store_runs_events_and_status_queries(store: Store) -> None:
    store.create_thread("t-1", "acme")
    store.create_run("r-1", "t-1", "support", "task one", tenant="acme", created_by="alice",
                     metadata={"m": 1})
    store.create_run("r-2", "t-1", "support", "task two", tenant="acme")
    store.update_run("r-1", status="success", final_answer="done", stop_reason="satisfied")
    seqs = [store.append_event("r-2", kind, {"n": i})
            for i, kind in enumerate(["run_started", "plan_created", "run_completed"])]

    run = store.get_run("r-1")
    assert run is not None and run.status == "success" and run.created_by == "alice"
    assert run.metadata == {"m": 1} and run.tenant == "acme"
    assert store.latest_run("t-1").id == "r-2"  # type: ignore[union-attr]
    assert [r.id for r in store.thread_runs("t-1")] == ["r-1", "r-2"]
    assert [r.id for r in store.runs_with_status("pending", "running")] == ["r-2"]
    assert seqs == [1, 2, 3]
    assert [e["type"] for e in store.events("r-2", after=1)] == ["plan_created", "run_completed"]
    assert store.run_counts() == {"success": 1, "pending": 1}


def test_store_journal_and_tool_ledger(store: Store) -> None:
    row_ = LedgerRow(run_id="r-1", call_key="plan", thread_id="t-1", tenant="acme",
                     role="manager.plan", agent=None, model="m", tier="large",
                     route_reason="start tier", prompt_tokens=10, completion_tokens=5,
                     cached_tokens=0, cost_usd=0.5, latency_ms=1.0, outcome="ok")
    for _ in range(2):  # first write wins
        store.ledger_put(row_, {"content": "x"})
    store.ledger_put(dataclasses.replace(row_, call_key="plan#1", outcome="error",
                                         prompt_tokens=0, completion_tokens=0, cost_usd=0.0),
                     None)
    store.tool_started("t-1:c1", "t-1", "billing", "issue_refund", "abc")
    store.tool_done("t-1:c1", True, {"refund": "R-1"})

    assert store.journal_get("r-1", "plan") == {"content": "x"}
    totals = store.totals("r-1")
    assert (totals.calls, totals.prompt_tokens, totals.cost_usd) == (1, 10, 0.5)
    row = store.tool_get("t-1:c1")
    assert row is not None and row["status"] == "DONE" and row["result"] == {"refund": "R-1"}
    assert store.tool_counts() == {"issue_refund": 1}
    assert [r["outcome"] for r in store.ledger("r-1")] == ["ok", "error"]
    assert store.tenant_spend("acme", since=0.0) == 0.5
    store.cache_put("k", "m", {"content": "cached"})
    store.cache_put("k", "m", {"content": "other"})
    assert store.cache_get("k") == {"content": "cached"}
    assert store.model_usage()[0]["calls"] == 1
