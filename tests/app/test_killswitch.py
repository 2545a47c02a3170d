"""The kill switch per tenant and platform-wide, stored in the app database (SQLite and
Postgres), audited with who flipped it, and read by the policy gate per call's tenant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.errors import Conflict
from app.governance.killswitch import PLATFORM, KillSwitch, KillSwitchGate, SwitchState
from app.governance.policy.gate import PolicyEngine
from app.governance.policy.rules import PolicyConfig
from app.storage.db import SqliteDatabase
from app.storage.store import Store
from graphs.ports import GateAction, GateRequest
from tools.spec import Risk, SideEffect


def call(tool: str, tenant: str) -> GateRequest:
    return GateRequest(team="support", agent="billing", tool=tool, args={},
                       side_effect=SideEffect.WRITE, risk=Risk.HIGH, thread_id="t-1",
                       tenant=tenant)


def entries(store: Store, tenant: str) -> list[dict[str, Any]]:
    return [e for e in store.audit_entries(tenant) if e["type"] == "kill_switch_changed"]


def test_killswitch_a_tenant_pause_holds_only_for_that_tenant(store: Store) -> None:
    switch = KillSwitch(store)
    switch.change("acme", "root", "acme", {"paused": True})

    with pytest.raises(Conflict, match="tenant acme are paused"):
        switch.admit("acme")
    switch.admit("globex")  # another tenant's runs go on
    (entry,) = entries(store, "acme")
    assert entry["actor"] == "root"
    assert entry["data"] == {"scope": "acme", "paused": True, "disabled_tools": [],
                             "max_concurrent_runs": None}
    assert entries(store, "globex") == []


def test_killswitch_platform_pause_holds_for_every_tenant(store: Store) -> None:
    switch = KillSwitch(store)
    switch.change(PLATFORM, "ops", PLATFORM, {"paused": True})
    for tenant in ("acme", "globex"):
        with pytest.raises(Conflict, match="platform-wide"):
            switch.admit(tenant)
    assert entries(store, PLATFORM)[0]["actor"] == "ops"
    switch.change(PLATFORM, "ops", PLATFORM, {"paused": False})
    switch.admit("acme")
    assert store.verify_audit().ok


def test_killswitch_disabled_tool_is_denied_for_its_tenant_only(store: Store) -> None:
    switch = KillSwitch(store)
    gate = KillSwitchGate(PolicyEngine(PolicyConfig()), switch)
    switch.change("acme", "root", "acme", {"disabled_tools": ["issue_refund"]})

    denied = gate.check(call("issue_refund", "acme"))
    assert (denied.action, denied.rule) == (GateAction.DENY, "kill_switch")
    assert gate.check(call("issue_refund", "globex")).action == GateAction.ALLOW
    assert gate.check(call("send_email", "acme")).action == GateAction.ALLOW
    switch.change(PLATFORM, "ops", PLATFORM, {"disabled_tools": ["send_email"]})
    assert gate.check(call("send_email", "globex")).action == GateAction.DENY


def test_killswitch_concurrency_cap_counts_the_tenants_active_runs(store: Store) -> None:
    switch = KillSwitch(store)
    switch.change("acme", "root", "acme", {"max_concurrent_runs": 2})
    store.create_thread("t-1", "acme")
    store.create_thread("t-2", "globex")
    store.create_run("r-1", "t-1", "support", "one", tenant="acme")
    switch.admit("acme")
    store.create_run("r-2", "t-1", "support", "two", tenant="acme")
    store.create_run("r-3", "t-2", "support", "three", tenant="globex")
    store.update_run("r-2", status="running")

    with pytest.raises(Conflict, match="2 active runs"):
        switch.admit("acme")
    switch.admit("acme", new_run=False)  # resuming a paused run is not a new one
    switch.admit("globex")
    store.update_run("r-1", status="success")
    switch.admit("acme")
    switch.change("acme", "root", "acme", {"max_concurrent_runs": None})
    assert switch.state("acme").max_concurrent_runs is None


def test_killswitch_state_is_shared_through_the_database(tmp_path: Path) -> None:
    one = Store(SqliteDatabase(tmp_path / "app.storage.db"))
    two = Store(SqliteDatabase(tmp_path / "app.storage.db"))  # another process's connection
    try:
        KillSwitch(one).change("acme", "root", "acme", {"paused": True,
                                                        "disabled_tools": ["issue_refund"]})
        seen = KillSwitch(two).state("acme")
        assert (seen.paused, seen.disabled_tools, seen.updated_by) == (
            True, frozenset({"issue_refund"}), "root")
    finally:
        one.close()
        two.close()


def test_killswitch_config_is_the_platform_state_until_an_operator_changes_it(
        store: Store) -> None:
    switch = KillSwitch(store, SwitchState(disabled_tools=frozenset({"issue_refund"})))
    assert switch.disabled_for("acme") == {"issue_refund"}
    switch.change(PLATFORM, "ops", PLATFORM, {"disabled_tools": []})
    assert switch.disabled_for("acme") == frozenset()
