"""The audit log: what a run leaves in it, the hash chain, append-only triggers on both
backends, tamper detection, and redaction of secrets and PII."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.api.auth import Principal
from app.config.settings import Settings
from app.governance.redact import redact, redact_text
from app.governance.resumers import InlineResume
from app.services import open_services
from app.storage.db import PostgresDatabase, SqliteDatabase
from app.storage.store import Store

TASK = "Customer C-1001 says order O-5002 arrived broken; refund it and let them know"
BOB = Principal("bob", "acme", frozenset({"approver"}),
                groups=frozenset({"support-leads", "budget-owners"}))


async def test_audit_records_a_run_with_identities_and_hashes(policy_settings: Settings) -> None:
    async with open_services(policy_settings) as s:
        run = await s.runner.start(TASK, "support", tenant="acme", created_by="alice")
        await s.approvals.decide(BOB, run.interrupts[0].value["approval_id"], "approve",
                                 InlineResume(s.runner))
        entries = s.store.audit_entries("acme", run.run_id)
        verdict = s.store.verify_audit("acme")
        everything = s.store.audit_entries("acme", limit=100_000)

    types = [e["type"] for e in entries]
    assert types[0] == "run_started" and entries[0]["actor"] == "alice"
    assert types[-1] == "run_completed"
    assert {"plan_created", "model_call", "tool_called", "tool_result", "approval_requested",
            "approval_decided"} <= set(types)
    decided = next(e for e in entries if e["type"] == "approval_decided")
    assert decided["actor"] == "bob" and decided["data"]["decision"] == "approve"
    called = next(e for e in entries if e["type"] == "tool_called")
    assert len(called["data"]["args_sha256"]) == 64 and "args" not in called["data"]
    result = next(e for e in entries if e["type"] == "tool_result")
    assert len(result["data"]["result_sha256"]) == 64 and "result" not in result["data"]
    model = next(e for e in entries if e["type"] == "model_call")
    assert {"model", "cost_usd"} <= set(model["data"]) and "messages" not in model["data"]
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    assert verdict.ok and verdict.entries == len(everything)


def _fill(store: Store, n: int = 5) -> None:
    store.create_thread("t-1", "acme")
    store.create_run("r-1", "t-1", "support", "task", tenant="acme", created_by="alice")
    for i in range(n):
        store.append_event("r-1", "model_call", {"role": "manager.plan", "model": "m",
                                                 "cost_usd": 0.01 * i})


def test_audit_verify_catches_a_row_altered_in_sqlite(tmp_path: Path) -> None:
    store = Store(SqliteDatabase(tmp_path / "app.storage.db"))
    _fill(store)
    assert store.verify_audit().ok
    store.close()

    raw = sqlite3.connect(tmp_path / "app.storage.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE audit_log SET data = '{}' WHERE seq = 3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM audit_log WHERE seq = 3")
    # Someone with the file drops the trigger and rewrites history.
    raw.execute("DROP TRIGGER audit_log_no_update")
    raw.execute("UPDATE audit_log SET data = replace(data, '0.03', '0.0') WHERE seq = 4")
    raw.commit()
    raw.close()

    reopened = Store(SqliteDatabase(tmp_path / "app.storage.db"))  # also restores the trigger
    verdict = reopened.verify_audit("acme")
    assert (verdict.ok, verdict.entries, verdict.first_bad_entry) == (False, 5, 4)
    reopened.close()


def test_audit_triggers_reject_update_and_delete_on_postgres(pg_url: str) -> None:
    store = Store(PostgresDatabase(pg_url))
    _fill(store, 2)
    try:
        for sql in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
            with pytest.raises(psycopg.Error, match="append-only"), store.db.tx() as c:
                c.run(sql)
        verdict = store.verify_audit("acme")
        assert verdict.ok and verdict.entries == 2
    finally:
        store.close()


def test_audit_redacts_secrets_and_pii(tmp_path: Path) -> None:
    store = Store(SqliteDatabase(tmp_path / "app.storage.db"))
    store.create_thread("t-1", "acme")
    store.create_run("r-1", "t-1", "support", "task", tenant="acme")
    store.append_event("r-1", "run_started", {
        "task": "Refund ada@example.com on card 4111 1111 1111 1111, key sk-live-abcdef123456",
        "team": "support"})
    (entry,) = store.audit_entries("acme")
    store.close()

    text = entry["data"]["task"]
    assert "ada@example.com" not in text and "4111" not in text and "sk-live" not in text
    assert "[REDACTED:email]" in text and "[REDACTED:card]" in text


@pytest.mark.parametrize(("raw", "gone"), [
    ("mail bob.smith+x@corp.co.uk now", "bob.smith"),
    ("card 5500-0000-0000-0004", "5500"),
    ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
    ("password=hunter22", "hunter22"),
    ("token: ghp_abcdefghijklmnopqrstu", "ghp_abc"),
])
def test_redact_text_removes(raw: str, gone: str) -> None:
    assert gone not in redact_text(raw)


def test_redact_blanks_secret_named_fields_and_keeps_the_rest() -> None:
    data: Any = {"api_key": "anything", "order_id": "O-5002", "nested": [{"email": "a@b.io"}]}
    assert redact(data) == {"api_key": "[REDACTED:secret]", "order_id": "O-5002",
                            "nested": [{"email": "[REDACTED:email]"}]}
