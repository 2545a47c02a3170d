"""Claims and fencing on both backends: a takeover bumps the epoch and every later write of
the old claim is refused; event numbers stay distinct under concurrent writers."""

from __future__ import annotations

import threading

import pytest

from app.errors import Conflict
from app.runs.claims import Claim, LeaseLost
from app.runs.fencing import FencedStore
from app.storage.store import LedgerRow, Store


@pytest.fixture
def store(store: Store) -> Store:
    """The shared store with the thread and run the claims are about."""
    store.create_thread("t-1", "acme")
    store.create_run("r-1", "t-1", "support", "task", tenant="acme")
    return store


def _ledger_row(key: str) -> LedgerRow:
    return LedgerRow(run_id="r-1", call_key=key, thread_id="t-1", tenant="acme",
                     role="manager.plan", agent=None, model="m", tier="large",
                     route_reason="test", prompt_tokens=1, completion_tokens=1,
                     cached_tokens=0, cost_usd=0.01, latency_ms=1.0, outcome="ok")


def test_claims_takeover_refuses_every_write_of_the_old_claim(store: Store) -> None:
    first = store.claim_run("r-1", "w1")
    assert isinstance(first, Claim) and first.epoch == 1
    assert store.claim_run("r-404", "w1") == "missing"
    old = FencedStore(store, first)
    old.append_event("r-1", "run_started", {"by": "w1"})
    old.tool_started("t-1:call-1", "t-1", "billing", "issue_refund", "abc")

    second = store.claim_run("r-1", "w2")
    assert isinstance(second, Claim) and second.epoch == 2
    new = FencedStore(store, second)

    with pytest.raises(LeaseLost):
        old.append_event("r-1", "step_completed", {"by": "w1"})
    with pytest.raises(LeaseLost):
        old.update_run("r-1", status="success", final_answer="stale")
    with pytest.raises(LeaseLost):
        old.tool_done("t-1:call-1", True, {"refund_id": "stale"})
    with pytest.raises(LeaseLost):
        old.ledger_put(_ledger_row("plan"), {"content": "stale"})
    with pytest.raises(LeaseLost, match="model call not sent"):
        old.journal_get("r-1", "plan")  # read before a call: the stale owner stops unpaid
    assert new.journal_get("r-1", "plan") is None

    new.append_event("r-1", "run_resumed", {"by": "w2"})
    new.tool_done("t-1:call-1", True, {"refund_id": "R-1"})
    new.ledger_put(_ledger_row("plan"), {"content": "fresh"})
    new.update_run("r-1", status="success", final_answer="done")

    run = store.get_run("r-1")
    assert run is not None and run.status == "success" and run.final_answer == "done"
    assert store.event_epochs("r-1") == [(1, 1), (2, 2)]
    assert store.tool_get("t-1:call-1")["result"] == {"refund_id": "R-1"}  # type: ignore[index]
    assert store.journal_get("r-1", "plan") == {"content": "fresh"}
    assert new.journal_get("r-1", "plan") == {"content": "fresh"}
    assert store.heartbeat(first) == "lost" and store.heartbeat(second) == "held"


def test_claims_live_owner_is_not_taken_over_until_its_heartbeat_is_stale(store: Store) -> None:
    held = store.claim_run("r-1", "w1", stale_s=30)
    assert isinstance(held, Claim)
    assert store.claim_run("r-1", "w2", stale_s=30, take_live=False) == "owned"
    assert isinstance(store.claim_run("r-1", "w1", stale_s=30, take_live=False), Claim)  # its own
    assert isinstance(store.claim_run("r-1", "w2", stale_s=0.0, take_live=False), Claim)  # stale
    store.release(held)  # an old epoch releases nothing
    assert store.get_run("r-1").status == "running"  # type: ignore[union-attr]


def test_claims_tenant_limit_counts_live_running_runs(store: Store) -> None:
    for n in (2, 3):
        store.create_run(f"r-{n}", "t-1", "support", "task", tenant="acme")
    store.create_thread("t-9", "globex")
    store.create_run("r-9", "t-9", "support", "task", tenant="globex")
    assert isinstance(store.claim_run("r-1", "w1", tenant_limit=2), Claim)
    assert isinstance(store.claim_run("r-2", "w1", tenant_limit=2), Claim)
    assert store.claim_run("r-3", "w1", tenant_limit=2) == "tenant_full"  # acme's limit
    assert isinstance(store.claim_run("r-9", "w1", tenant_limit=2), Claim)  # globex is not
    store.update_run("r-1", status="success")
    assert isinstance(store.claim_run("r-3", "w1", tenant_limit=2), Claim)


def test_claims_cancel_request_reaches_the_heartbeat(store: Store) -> None:
    claim = store.claim_run("r-1", "w1")
    assert isinstance(claim, Claim)
    store.set_cancel_requested("r-1")
    assert store.cancel_requested("r-1") and store.heartbeat(claim) == "cancel"


def test_claims_one_beat_renews_every_claim_and_tells_each_apart(store: Store) -> None:
    for n in (2, 3):
        store.create_run(f"r-{n}", "t-1", "support", "task", tenant="acme")
    claims = [store.claim_run(f"r-{n}", "w1") for n in (1, 2, 3)]
    assert all(isinstance(c, Claim) for c in claims)
    held, taken, stopping = claims  # type: ignore[misc]
    assert isinstance(store.claim_run("r-2", "w2"), Claim)  # another owner took r-2 over
    store.set_cancel_requested("r-3")
    with store.db.tx() as c:
        c.run("UPDATE runs SET heartbeat_at = 1.0 WHERE id = ?", ("r-1",))
    assert store.heartbeat_all([held, taken, stopping]) == {
        "r-1": "held", "r-2": "lost", "r-3": "cancel"}
    beat = store.db.one("SELECT heartbeat_at FROM runs WHERE id = ?", ("r-1",))
    assert beat is not None and float(beat["heartbeat_at"]) > 1.0
    assert store.heartbeat_all([]) == {}


def test_store_exclusive_run_refuses_a_busy_thread(store: Store) -> None:
    with pytest.raises(Conflict):
        store.create_run("r-2", "t-1", "support", "again", tenant="acme", exclusive=True)
    store.update_run("r-1", status="success")
    store.create_run("r-2", "t-1", "support", "again", tenant="acme", exclusive=True)
    assert store.latest_run("t-1").id == "r-2"  # type: ignore[union-attr]


def test_store_event_numbers_are_distinct_under_concurrent_writers(store: Store) -> None:
    def write(n: int) -> None:
        for i in range(25):
            store.append_event("r-1", "custom", {"writer": n, "i": i})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [e["seq"] for e in store.events("r-1", 0, limit=1000)]
    assert seqs == list(range(1, 101))
