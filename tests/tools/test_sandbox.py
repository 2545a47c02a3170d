"""Sandbox schema, seed data, reset and ensure."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tools.sandbox import connect, ensure, reset

EMPTY_AT_SEED = ("refunds", "outbox", "incidents", "incident_updates", "remediations")


def _db(tmp_path: Path) -> Path:
    path = tmp_path / "nested" / "dir" / "sandbox.db"
    reset(path)
    return path


def _one(conn: sqlite3.Connection, sql: str, *params: object) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
    assert row is not None
    return row


def test_reset_creates_parent_dirs(tmp_path: Path) -> None:
    path = _db(tmp_path)
    assert path.exists()


def test_connect_sets_pragmas(tmp_path: Path) -> None:
    conn = connect(_db(tmp_path))
    try:
        assert _one(conn, "PRAGMA journal_mode")[0] == "wal"
        assert _one(conn, "PRAGMA busy_timeout")[0] == 5000
        assert _one(conn, "PRAGMA foreign_keys")[0] == 1
        assert conn.row_factory is sqlite3.Row
    finally:
        conn.close()


def test_seed_customers_exist(tmp_path: Path) -> None:
    conn = connect(_db(tmp_path))
    try:
        rows = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM customers")}
    finally:
        conn.close()
    assert rows["C-1001"] == {
        "id": "C-1001",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "tier": "gold",
    }
    assert (rows["C-1002"]["name"], rows["C-1002"]["tier"]) == ("Grace Hopper", "silver")
    assert (rows["C-1003"]["email"], rows["C-1003"]["tier"]) == ("alan@example.com", "standard")


def test_seed_orders_exist(tmp_path: Path) -> None:
    conn = connect(_db(tmp_path))
    try:
        rows = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM orders")}
        o5004_charges = _one(
            conn, "SELECT count(*), sum(amount_usd) FROM payments WHERE order_id = 'O-5004'"
        )
    finally:
        conn.close()
    assert (rows["O-5001"]["customer_id"], rows["O-5001"]["amount_usd"]) == ("C-1001", 24.0)
    assert (rows["O-5002"]["item"], rows["O-5002"]["amount_usd"]) == ("Espresso machine", 189.0)
    assert (rows["O-5003"]["status"], rows["O-5003"]["amount_usd"]) == ("shipped", 129.5)
    assert rows["O-5004"]["status"] == "delivered"
    assert "duplicate charge" in rows["O-5004"]["notes"]
    assert tuple(o5004_charges) == (2, 178.0)


def test_seed_tickets_exist(tmp_path: Path) -> None:
    conn = connect(_db(tmp_path))
    try:
        rows = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM tickets")}
    finally:
        conn.close()
    assert (rows["T-9001"]["order_id"], rows["T-9001"]["status"]) == ("O-5002", "open")
    assert rows["T-9002"]["subject"] == "Where is my order?"
    assert (rows["T-9003"]["customer_id"], rows["T-9003"]["subject"]) == ("C-1003", "Charged twice")


def test_seed_services_exist(tmp_path: Path) -> None:
    conn = connect(_db(tmp_path))
    try:
        rows = {r["name"]: dict(r) for r in conn.execute("SELECT * FROM services")}
    finally:
        conn.close()
    checkout = rows["checkout-api"]
    assert (checkout["status"], checkout["error_rate"], checkout["replicas"]) == (
        "degraded",
        0.23,
        3,
    )
    assert (checkout["version"], checkout["previous_version"]) == ("v4.2.0", "v4.1.3")
    payments = rows["payments-worker"]
    assert (payments["status"], payments["p95_latency_ms"], payments["replicas"]) == (
        "healthy",
        2400,
        2,
    )
    search = rows["search-api"]
    assert (search["version"], search["previous_version"], search["error_rate"]) == (
        "v2.3.1",
        "v2.3.0",
        0.15,
    )
    assert (rows["inventory-api"]["environment"], rows["inventory-api"]["status"]) == (
        "staging",
        "healthy",
    )


def test_seed_runbooks_exist(tmp_path: Path) -> None:
    conn = connect(_db(tmp_path))
    try:
        rows = {r["service"]: dict(r) for r in conn.execute("SELECT * FROM runbooks")}
    finally:
        conn.close()
    assert rows["checkout-api"]["title"] == "High 5xx rate"
    assert "Restart" in rows["checkout-api"]["body"]
    assert rows["payments-worker"]["title"] == "Latency above SLO"
    assert "4 replicas" in rows["payments-worker"]["body"]
    assert rows["search-api"]["title"] == "Errors after deploy"


def test_seed_write_tables_empty(tmp_path: Path) -> None:
    conn = connect(_db(tmp_path))
    try:
        counts = {t: _one(conn, f"SELECT count(*) FROM {t}")[0] for t in EMPTY_AT_SEED}
    finally:
        conn.close()
    assert counts == dict.fromkeys(EMPTY_AT_SEED, 0)


def test_reset_restores_seed_after_changes(tmp_path: Path) -> None:
    path = _db(tmp_path)
    conn = connect(path)
    try:
        conn.execute("UPDATE services SET status = 'down' WHERE name = 'checkout-api'")
        conn.execute("DELETE FROM tickets WHERE id = 'T-9001'")
        conn.execute(
            "INSERT INTO refunds VALUES ('R-1', 'O-5001', 5.0, 'x', '2025-01-01T00:00:00Z', 'k')"
        )
        conn.execute("CREATE TABLE stray (x INTEGER)")
        conn.commit()
    finally:
        conn.close()
    reset(path)
    conn = connect(path)
    try:
        status = _one(conn, "SELECT status FROM services WHERE name = 'checkout-api'")[0]
        ticket = conn.execute("SELECT id FROM tickets WHERE id = 'T-9001'").fetchone()
        refunds = _one(conn, "SELECT count(*) FROM refunds")[0]
        stray = conn.execute("SELECT name FROM sqlite_master WHERE name = 'stray'").fetchone()
    finally:
        conn.close()
    assert status == "degraded"
    assert ticket is not None
    assert refunds == 0
    assert stray is None


def test_ensure_creates_missing_db(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "sandbox.db"
    ensure(path)
    conn = connect(path)
    try:
        assert _one(conn, "SELECT count(*) FROM customers")[0] >= 3
    finally:
        conn.close()


def test_ensure_keeps_existing_data(tmp_path: Path) -> None:
    path = _db(tmp_path)
    conn = connect(path)
    try:
        conn.execute("UPDATE customers SET tier = 'silver' WHERE id = 'C-1001'")
        conn.commit()
    finally:
        conn.close()
    ensure(path)
    conn = connect(path)
    try:
        assert _one(conn, "SELECT tier FROM customers WHERE id = 'C-1001'")[0] == "silver"
    finally:
        conn.close()


def test_demo_pack_puts_the_sandbox_in_foremans_database_when_it_has_one(
        tmp_path: Path, pg_url: str) -> None:
    from tools.catalog import get_tool
    from tools.demo import PACK
    from tools.pack import PackEnv
    from tools.spec import ToolContext

    settings = PACK.prepare(PackEnv({}, tmp_path, tmp_path, pg_url))
    assert settings == {"db_url": pg_url}
    assert not (tmp_path / "sandbox.db").exists()
    spec = get_tool("issue_refund")
    ctx = ToolContext(idempotency_key="t:refund-1", settings=settings)
    args = {"order_id": "O-5002", "amount_usd": 50, "reason": "arrived broken"}
    first = spec.run(ctx, spec.validate(args))
    again = spec.run(ctx, spec.validate(args))
    assert (first["replayed"], again["replayed"], again["id"]) == (False, True, first["id"])
    conn = connect(pg_url)
    try:
        rows = conn.execute("SELECT order_id, amount_usd FROM refunds").fetchall()
    finally:
        conn.close()
    assert [tuple(r) for r in rows] == [("O-5002", 50.0)]
    # Without a database URL the pack keeps its SQLite file.
    assert PACK.prepare(PackEnv({}, tmp_path, tmp_path)) == {
        "db_path": str(tmp_path / "sandbox.db")}


def test_demo_pack_refuses_two_sandboxes_or_a_non_postgres_url(tmp_path: Path) -> None:
    from tools.demo import PACK
    from tools.pack import PackEnv

    with pytest.raises(ValueError, match="not both"):
        PACK.prepare(PackEnv({"db_url": "postgresql://x/y", "db_path": "a.db"}, tmp_path,
                             tmp_path))
    with pytest.raises(ValueError, match="postgresql://"):
        PACK.prepare(PackEnv({"db_url": "mysql://x/y"}, tmp_path, tmp_path))
