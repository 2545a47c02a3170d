"""A call asked again by a new pause after its approval was settled gets an approval of its
own (a counterexample of the approvals state machine, kept as a fixed case)."""

from __future__ import annotations

from pathlib import Path

from app.runs.events import RunEvents
from app.runs.pauses import Interrupt
from app.storage.db import open_database
from app.storage.store import Store
from graphs.approval import interrupt_value
from graphs.ports import GateRequest
from tests.verify.approvals_model import CheckpointRunner, world


def test_a_call_asked_again_by_a_new_pause_after_its_approval_expired_gets_a_new_one(
        tmp_path: Path) -> None:
    """The counterexample the machine found: the same call and arguments paused again under
    a new interrupt once their approval had expired waited on that expired approval."""
    settings, gate, registry = world()
    store = Store(open_database(None, tmp_path / "foreman.db"))
    runner = CheckpointRunner(settings, store, None, None, gate, registry)  # type: ignore[arg-type]
    store.create_thread("t-1", "acme")
    store.create_run("r-1", "t-1", "support", "refund it", tenant="acme", created_by="alice")
    run = store.get_run("r-1")
    assert run is not None
    args = {"order_id": "O-5002", "amount_usd": 120.0, "reason": "broken"}
    verdict = gate.check(GateRequest(team="support", agent="billing", tool="issue_refund",
                                     args=args, side_effect=registry.get("issue_refund")
                                     .side_effect, risk=registry.get("issue_refund").risk,
                                     thread_id="t-1", tenant="acme"))
    value = interrupt_value({"id": "call-1", "name": "issue_refund", "arguments": ""},
                            registry.get("issue_refund"), args, verdict, "billing", "t-1")

    def pause(interrupt: str) -> None:
        runner._record_pause(store, run, [Interrupt(interrupt, value)], {}, 0.0,
                             RunEvents(store, run.id))

    pause("i-1")
    store.settle_approval(value["approval_id"], "expired", "reject", "system:expiry",
                          "expired", {"approval_id": value["approval_id"]})
    pause("i-1")  # the same pause again (a restart): still the one, settled, approval
    pause("i-2")
    pause("i-2")
    rows = store.run_approvals("r-1")
    assert [(r.interrupt_id, r.status) for r in rows] == [("i-1", "expired"), ("i-2", "pending")]
    assert rows[1].id != value["approval_id"] and rows[1].args_sha256 == value["args_sha256"]
    requested = [e["data"]["approval_id"] for e in store.events("r-1")
                 if e["type"] == "approval_requested"]
    assert requested == [rows[0].id, rows[1].id]
    store.close()
