"""One conformance suite for the app store, run on SQLite and on the machine's PostgreSQL."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from app.storage.db import Database, PostgresDatabase, SqliteDatabase
from app.storage.store import LedgerRow, Store


def test_store_threads_are_tenant_scoped_and_ids_unique(store: Store) -> None:
    assert store.create_thread("t-1", "acme", {"k": "v"})
    assert not store.create_thread("t-1", "acme")
    assert store.create_thread("t-1", "globex", {"other": True})  # ids are per tenant
    store.create_thread("t-2", "globex")
    acme = store.get_thread("acme", "t-1")
    assert acme is not None
    store.touch_thread(acme.key, {"more": 1})

    thread = store.get_thread("acme", "t-1")
    assert thread is not None and thread.tenant == "acme" and thread.id == "t-1"
    assert thread.metadata == {"k": "v", "more": 1}
    theirs = store.get_thread("globex", "t-1")
    assert theirs is not None and theirs.metadata == {"other": True}
    assert theirs.key != thread.key
    assert [t.id for t in store.search_threads("acme")] == ["t-1"]
    assert sorted(t.id for t in store.search_threads("globex")) == ["t-1", "t-2"]
    assert store.get_thread("acme", "nope") is None
    assert store.get_thread("acme", "t-2") is None  # globex's only
    assert store.ensure_thread("t-1", "acme") == thread.key
    assert store.ensure_thread(thread.key, "acme") == thread.key
    assert store.ensure_thread(theirs.key, "acme") != theirs.key  # never another tenant's
    assert store.thread_by_key(thread.key) == thread


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_store_migrates_global_thread_ids_to_per_tenant(request: pytest.FixtureRequest,
                                                        tmp_path: Path, backend: str) -> None:
    """A database from before per-tenant ids: its threads keep their id as their key (what
    its runs, approvals and checkpoints refer to), and another tenant may now use the id."""
    db: Database = (SqliteDatabase(tmp_path / "old.db") if backend == "sqlite"
                    else PostgresDatabase(request.getfixturevalue("pg_url")))
    with db.tx() as c:
        c.run("CREATE TABLE threads (id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
              " metadata TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
              " updated_at DOUBLE PRECISION NOT NULL)")
        c.run("INSERT INTO threads VALUES ('t-old', 'acme', '{\"k\": 1}', 1.0, 2.0)")
    store = Store(db)
    try:
        old = store.get_thread("acme", "t-old")
        assert old is not None and old.key == "t-old" and old.metadata == {"k": 1}
        assert store.ensure_thread("t-old", "acme") == "t-old"
        assert not store.create_thread("t-old", "acme")
        assert store.get_thread("globex", "t-old") is None
        assert store.create_thread("t-old", "globex")
        new = store.get_thread("globex", "t-old")
        assert new is not None and new.key not in ("t-old", "")
        assert Store(db).get_thread("acme", "t-old") == old  # a second open changes nothing
    finally:
        store.close()


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


def test_store_new_run_queues_behind_a_pending_approval_and_earlier_runs(store: Store) -> None:
    key = store.ensure_thread("t-q", "acme")
    store.create_run("r-1", key, "support", "first", tenant="acme")
    time.sleep(0.01)
    store.create_run("r-2", key, "support", "second", tenant="acme")
    first, second = store.get_run("r-1"), store.get_run("r-2")
    assert first is not None and second is not None
    assert [r.id for r in store.active_runs(key)] == ["r-1", "r-2"]
    assert store.queued_behind(second) and not store.queued_behind(first)
    store.append_event("r-1", "run_started", {"thread_id": "t-q"})
    store.update_run("r-1", status="interrupted")
    assert not store.queued_behind(second)
    store.record_approval({
        "id": "ap-q", "interrupt_id": "i-q", "thread_id": key, "run_id": "r-1",
        "tenant": "acme", "requester": "alice", "kind": "tool", "action": "issue_refund",
        "args": {}, "args_sha256": "x", "agent": "billing", "rule": "refunds",
        "approver_group": None, "risk": "high", "description": "d", "context": {},
        "status": "pending", "created_at": 1.0, "expires_at": None}, {"approval_id": "ap-q"})
    assert store.queued_behind(second)
    assert not store.queued_behind(first)  # it has started: it is what the approval resumes
    assert store.thread_pending_approvals(key)[0].as_json()["thread_id"] == "t-q"


def test_store_reads_a_tenants_run_on_its_thread_with_totals_in_one_go(store: Store) -> None:
    from app.storage.thread_keys import thread_key

    for tenant in ("acme", "globex"):
        store.create_thread("t-1", tenant)
        store.create_run(f"r-{tenant}", thread_key(tenant, "t-1"), "support", "task",
                         tenant=tenant)
    store.create_thread("t-2", "acme")
    call = LedgerRow(run_id="r-acme", call_key="plan", thread_id=thread_key("acme", "t-1"),
                     tenant="acme", role="manager.plan", agent=None, model="m", tier="large",
                     route_reason="start tier", prompt_tokens=10, completion_tokens=5,
                     cached_tokens=0, cost_usd=0.25, latency_ms=1.0, outcome="ok")
    store.ledger_put(call, {"content": "x"})
    store.ledger_put(dataclasses.replace(call, call_key="plan#1", outcome="error"), None)

    found = store.thread_run("acme", "t-1", "r-acme")
    assert found is not None
    run, totals = found
    assert (run.id, run.tenant, run.task) == ("r-acme", "acme", "task")
    assert totals == store.totals("r-acme")
    assert (totals.calls, totals.prompt_tokens, totals.cost_usd) == (1, 20, 0.5)
    none_yet = store.thread_run("globex", "t-1", "r-globex")
    assert none_yet is not None and none_yet[1].calls == 0 and none_yet[1].cost_usd == 0.0
    # another tenant's run, or the run under another of the tenant's threads: not found
    assert store.thread_run("acme", "t-1", "r-globex") is None
    assert store.thread_run("globex", "t-1", "r-acme") is None
    assert store.thread_run("acme", "t-2", "r-acme") is None


def test_store_pending_memory_notes_keep_the_latest_version_per_note(store: Store) -> None:
    def row(note_id: str, write_id: str, text: str, tenant: str = "acme") -> dict[str, Any]:
        return {"id": note_id, "tenant": tenant, "thread_id": "t-1", "write_id": write_id,
                "text": text, "meta": {"key": note_id, "source": "agent:billing"}}

    store.put_pending([row("n1", "w1", "first"), row("n2", "w1", "other")])
    store.put_pending([row("n1", "w2", "second"), row("g1", "w1", "globex", "globex")])
    pending = {r["id"]: r for r in store.pending_of("acme", "t-1")}
    assert {k: (r["write_id"], r["text"]) for k, r in pending.items()} == {
        "n1": ("w2", "second"), "n2": ("w1", "other")}
    assert pending["n1"]["meta"] == {"key": "n1", "source": "agent:billing"}

    # A move that read version w1 of n1 leaves the newer w2 pending.
    store.drop_pending([("n1", "w1"), ("n2", "w1")])
    assert [(r["id"], r["text"]) for r in store.pending_of("acme", "t-1")] == [("n1", "second")]
    assert [r["text"] for r in store.pending_of("globex", "t-1")] == ["globex"]
