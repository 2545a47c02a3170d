"""A process starting beside busy writers takes no table lock for schema it already has."""

from __future__ import annotations

import threading

import psycopg

from app.storage.db import PostgresDatabase
from app.storage.store import Store


def test_a_second_start_on_postgres_runs_no_ddl(pg_url: str) -> None:
    first = Store(PostgresDatabase(pg_url))
    first.create_thread("t-1", "acme")
    first.create_run("r-1", "t-1", "support", "task", tenant="acme")
    parts = {r["part"] for r in first.db.query("SELECT part FROM foreman_schema")}
    assert "store" in parts
    # A writer holds audit_log and events in an open transaction, as a worker between
    # its event insert and its commit does; a start that ran DDL on them would wait.
    holder = psycopg.connect(pg_url, autocommit=False)
    holder.execute("LOCK TABLE audit_log, events, runs IN ROW EXCLUSIVE MODE")
    started: list[Store] = []
    t = threading.Thread(target=lambda: started.append(Store(PostgresDatabase(pg_url))))
    t.start()
    t.join(20)
    try:
        assert started, "the second start waited on the writer's locks"
        assert started[0].get_run("r-1") is not None
    finally:
        holder.rollback()
        holder.close()
        t.join(20)
        for s in (*started, first):
            s.close()


def test_a_changed_definition_is_applied_once(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    applied: list[str] = []
    for definition in ("v1", "v1", "v2", "v2"):
        db.schema_once("part", definition, lambda d=definition: applied.append(d))
    assert applied == ["v1", "v2"]
    db.close()
