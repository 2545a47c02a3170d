"""Audit tampering sweep: seeded random mutations of real hash chains, every one detected.

Each case takes a chain written through the store (two tenants, the audited event types),
changes it as someone with raw database access could, and runs the verifier. In-place and
structural changes are caught by the chain alone; truncating the newest entries and
rewriting a suffix with recomputed hashes are caught only against an anchored head (a head
saved outside the database, `foreman audit head`). What no check here can catch — entries
appended after the newest anchor by someone who can write the table — is asserted too, so
docs/reliability.md names it honestly instead of hiding it.

`make test` runs a fast slice; `make verify` sets FOREMAN_VERIFY_SCALE=full.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.governance.audit import GENESIS, Head, entry_hash, verify_chain
from app.storage.db import SqliteDatabase
from app.storage.store import Store
from tests.verify.record import record, scale

Row = dict[str, Any]
TENANTS = ("acme", "globex")
TYPES = ("run_started", "plan_created", "model_call", "tool_called", "tool_result",
         "approval_requested", "approval_decided", "run_completed")


def _write_chains(path: Path, per_tenant: int = 40) -> None:
    store = Store(SqliteDatabase(path))
    rng = random.Random(7)
    try:
        for i in range(per_tenant * len(TENANTS)):
            tenant = TENANTS[i % len(TENANTS)]
            with store.db.tx() as c:
                store.audit_append(c, tenant, TYPES[i % len(TYPES)],
                                   {"n": i, "cost_usd": round(rng.random(), 4),
                                    "tool": rng.choice(["issue_refund", "send_email"])},
                                   run_id=f"r-{i // 8}", actor=rng.choice(["alice", "bob"]))
    finally:
        store.close()


def _rows(path: Path) -> list[Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM audit_log ORDER BY tenant, seq")]
    finally:
        conn.close()


def _heads(rows: list[Row]) -> dict[str, Head]:
    heads: dict[str, Head] = {}
    for r in rows:
        heads[r["tenant"]] = Head(r["tenant"], int(r["seq"]), r["hash"])
    return heads


def _chain(rows: list[Row], tenant: str) -> list[Row]:
    return [r for r in rows if r["tenant"] == tenant]


def _sorted(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (r["tenant"], int(r["seq"])))


def _rehash(rows: list[Row], tenant: str, start_seq: int) -> None:
    """Recompute links and hashes of a tenant's chain from ``start_seq`` on (a forger)."""
    prev = GENESIS
    for r in _sorted(rows):
        if r["tenant"] != tenant:
            continue
        if int(r["seq"]) >= start_seq:
            r["prev_hash"] = prev
            r["hash"] = entry_hash(prev, tenant, int(r["seq"]), float(r["ts"]), r["run_id"],
                                   r["type"], r["actor"], r["data"])
        prev = r["hash"]


def _inner(rng: random.Random, rows: list[Row]) -> tuple[str, int]:
    """A tenant and the list index of one of its entries that is not its newest."""
    tenant = rng.choice(TENANTS)
    idx = [i for i, r in enumerate(rows) if r["tenant"] == tenant][:-1]
    return tenant, rng.choice(idx)


def m_payload_edit(rng: random.Random, rows: list[Row]) -> bool:
    _, i = _inner(rng, rows)
    data = json.loads(rows[i]["data"])
    data["cost_usd"] = round(float(data.get("cost_usd", 0)) + rng.choice([-1, 1]) * 0.01, 4)
    rows[i]["data"] = json.dumps(data, sort_keys=True)
    return False


def m_field_edit(rng: random.Random, rows: list[Row]) -> bool:
    _, i = _inner(rng, rows)
    field = rng.choice(["actor", "type", "run_id", "ts"])
    if field == "ts":
        rows[i]["ts"] = float(rows[i]["ts"]) + rng.choice([-3600.0, 0.5, 86400.0])
    elif field == "actor":
        rows[i]["actor"] = "mallory" if rows[i]["actor"] != "mallory" else "alice"
    elif field == "type":
        rows[i]["type"] = rng.choice([t for t in TYPES if t != rows[i]["type"]])
    else:
        rows[i]["run_id"] = "r-forged"
    return False


def m_hash_edit(rng: random.Random, rows: list[Row]) -> bool:
    _, i = _inner(rng, rows)
    key = rng.choice(["hash", "prev_hash"])
    rows[i][key] = f"{rng.getrandbits(256):064x}"
    return False


def m_row_delete(rng: random.Random, rows: list[Row]) -> bool:
    _, i = _inner(rng, rows)
    del rows[i]
    return False


def m_reorder(rng: random.Random, rows: list[Row]) -> bool:
    tenant, i = _inner(rng, rows)
    j = rng.choice([k for k, r in enumerate(rows) if r["tenant"] == tenant and k != i])
    rows[i]["seq"], rows[j]["seq"] = rows[j]["seq"], rows[i]["seq"]
    rows.sort(key=lambda r: (r["tenant"], int(r["seq"])))
    return False


def m_forged_insert(rng: random.Random, rows: list[Row]) -> bool:
    """A well-formed entry in the middle; later entries renumbered to make room."""
    tenant, i = _inner(rng, rows)
    at = int(rows[i]["seq"])
    for r in rows:
        if r["tenant"] == tenant and int(r["seq"]) >= at:
            r["seq"] = int(r["seq"]) + 1
    prev = GENESIS if at == 1 else next(r["hash"] for r in rows if r["tenant"] == tenant
                                         and int(r["seq"]) == at - 1)
    data = json.dumps({"decision": "approve", "by": "mallory"}, sort_keys=True)
    forged = {"tenant": tenant, "seq": at, "ts": float(rows[i]["ts"]), "run_id": "r-0",
              "type": "approval_decided", "actor": "mallory", "data": data,
              "prev_hash": prev}
    forged["hash"] = entry_hash(prev, tenant, at, forged["ts"], "r-0", "approval_decided",
                                "mallory", data)
    rows.append(forged)
    rows.sort(key=lambda r: (r["tenant"], int(r["seq"])))
    return False


def m_replay(rng: random.Random, rows: list[Row]) -> bool:
    """An entry copied next to itself (a decision recorded twice)."""
    tenant, i = _inner(rng, rows)
    copy = dict(rows[i])
    for r in rows:
        if r["tenant"] == tenant and int(r["seq"]) > int(copy["seq"]):
            r["seq"] = int(r["seq"]) + 1
    copy["seq"] = int(copy["seq"]) + 1
    rows.append(copy)
    rows.sort(key=lambda r: (r["tenant"], int(r["seq"])))
    return False


def m_cross_tenant_splice(rng: random.Random, rows: list[Row]) -> bool:
    """Another tenant's entry moved into this chain, keeping its own hashes."""
    tenant, i = _inner(rng, rows)
    other = next(t for t in TENANTS if t != tenant)
    donor = rng.choice(_chain(rows, other))
    spliced = {**donor, "tenant": tenant, "seq": rows[i]["seq"]}
    rows[i] = spliced
    return False


def m_truncate(rng: random.Random, rows: list[Row]) -> bool:
    """The newest entries removed: invisible to the chain, caught by the anchor."""
    tenant = rng.choice(TENANTS)
    chain = _chain(rows, tenant)
    cut = rng.randint(1, len(chain) - 1)
    for r in chain[-cut:]:
        rows.remove(r)
    return True


def m_suffix_rewrite(rng: random.Random, rows: list[Row]) -> bool:
    """A suffix edited and every later hash recomputed: caught only by the anchor."""
    tenant, i = _inner(rng, rows)
    data = json.loads(rows[i]["data"])
    data["n"] = -1
    rows[i]["data"] = json.dumps(data, sort_keys=True)
    _rehash(rows, tenant, int(rows[i]["seq"]))
    return True


MUTATIONS: dict[str, Callable[[random.Random, list[Row]], bool]] = {
    "payload edit": m_payload_edit, "field edit": m_field_edit, "hash edit": m_hash_edit,
    "row delete": m_row_delete, "reorder": m_reorder, "forged insert": m_forged_insert,
    "replayed entry": m_replay, "cross-tenant splice": m_cross_tenant_splice,
    "truncation (anchored)": m_truncate, "suffix rewrite (anchored)": m_suffix_rewrite,
}


@pytest.fixture(scope="module")
def chain_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit") / "app.storage.db"
    _write_chains(path)
    return path


def test_audit_random_mutations_are_all_detected(chain_file: Path) -> None:
    original = _rows(chain_file)
    anchors = _heads(original)
    assert verify_chain(original).ok and verify_chain(original, anchors).ok
    cases = scale(fast=300, full=2000)
    rng = random.Random(20261201)
    missed: Counter[str] = Counter()
    tried: Counter[str] = Counter()
    names = list(MUTATIONS)
    for n in range(cases):
        name = names[n % len(names)]
        rows = [dict(r) for r in original]
        needs_anchor = MUTATIONS[name](rng, rows)
        tried[name] += 1
        verdict = verify_chain(rows, anchors if needs_anchor else None)
        if verdict.ok:
            missed[name] += 1
        elif needs_anchor:
            # Without the anchor these two classes are invisible: the chain is consistent.
            assert verify_chain(rows).ok, name
    record("audit mutations", sum(tried.values()), sum(missed.values()),
           "every mutation detected; classes (cases): "
           + ", ".join(f"{k} ({v})" for k, v in sorted(tried.items())))
    assert not missed, dict(missed)


def test_audit_mutations_through_the_database_file_are_detected(chain_file: Path,
                                                                tmp_path: Path) -> None:
    """The same classes applied with SQL to a copy of the file, verified by the store."""
    rng = random.Random(99)
    statements = {
        "payload edit": "UPDATE audit_log SET data = replace(data, '\"n\":', '\"n\": 1') "
                        "WHERE tenant = 'acme' AND seq = {k}",
        "row delete": "DELETE FROM audit_log WHERE tenant = 'globex' AND seq = {k}",
        "reorder": "UPDATE audit_log SET seq = -1 WHERE tenant = 'acme' AND seq = {k};"
                   "UPDATE audit_log SET seq = {k} WHERE tenant = 'acme' AND seq = {k} + 1;"
                   "UPDATE audit_log SET seq = {k} + 1 WHERE tenant = 'acme' AND seq = -1",
        "cross-tenant splice": "UPDATE audit_log SET tenant = 'acme', seq = 1000 "
                               "WHERE tenant = 'globex' AND seq = {k}",
        "hash edit": "UPDATE audit_log SET hash = 'x' || substr(hash, 2) "
                     "WHERE tenant = 'globex' AND seq = {k}",
    }
    for name, sql in statements.items():
        k = rng.randint(2, 30)
        path = tmp_path / f"{name.replace(' ', '-')}.db"
        shutil.copy(chain_file, path)
        raw = sqlite3.connect(path)
        raw.execute("DROP TRIGGER audit_log_no_update")
        raw.execute("DROP TRIGGER audit_log_no_delete")
        raw.executescript(sql.format(k=k))
        raw.commit()
        raw.close()
        store = Store(SqliteDatabase(path))
        try:
            verdict = store.verify_audit()
        finally:
            store.close()
        assert not verdict.ok, name
        assert verdict.first_bad_entry is not None and verdict.first_bad_entry <= 1000, name


def test_audit_limits_without_an_anchor_are_real(chain_file: Path) -> None:
    """What the chain alone cannot see, asserted so the docs cannot overstate it."""
    original = _rows(chain_file)
    truncated = [r for r in original if not (r["tenant"] == "acme" and int(r["seq"]) > 30)]
    assert verify_chain(truncated).ok
    assert not verify_chain(truncated, _heads(original)).ok
    # An entry appended after the newest anchor by someone who can write the table is
    # indistinguishable from a real one; only keeping writes to the service prevents it.
    tail = _chain(original, "acme")[-1]
    data = json.dumps({"decision": "approve"}, sort_keys=True)
    forged = {"tenant": "acme", "seq": int(tail["seq"]) + 1, "ts": float(tail["ts"]) + 1,
              "run_id": None, "type": "approval_decided", "actor": "mallory", "data": data,
              "prev_hash": tail["hash"]}
    forged["hash"] = entry_hash(tail["hash"], "acme", forged["seq"], forged["ts"], None,
                                "approval_decided", "mallory", data)
    assert verify_chain(_sorted([*original, forged]), _heads(original)).ok


def test_audit_heads_and_anchored_verify_on_the_store(tmp_path: Path) -> None:
    path = tmp_path / "app.storage.db"
    _write_chains(path, per_tenant=5)
    store = Store(SqliteDatabase(path))
    try:
        heads = store.audit_heads()
        assert {t: h.seq for t, h in heads.items()} == {"acme": 5, "globex": 5}
        assert store.verify_audit(anchors=heads).ok
        stale = {"acme": Head("acme", 5, "0" * 64)}
        verdict = store.verify_audit("acme", anchors=stale)
        assert (verdict.ok, verdict.first_bad_entry, verdict.tenant) == (False, 5, "acme")
        assert store.verify_audit("globex", anchors=stale).ok  # other tenants' anchors ignored
    finally:
        store.close()
