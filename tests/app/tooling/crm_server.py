"""A small CRM as an MCP server (the official SDK), for tests: customers and credits in
its own SQLite file. ``python crm_server.py stdio`` or ``python crm_server.py http PORT``.

Environment: ``CRM_DB`` (the database file), ``CRM_PID_FILE`` (write the pid there),
``CRM_HANG_FILE`` (if that file exists when a credit is written, delete it and never
answer: a write that landed while the caller died).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

DB = Path(os.environ.get("CRM_DB", "crm.db"))
KEY_META = "foreman/idempotency_key"
server = MCPServer("crm", log_level="WARNING")


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(DB, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.executescript(
        "CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, name TEXT, tier TEXT);"
        "CREATE TABLE IF NOT EXISTS credits (id TEXT PRIMARY KEY, customer_id TEXT, "
        "amount_usd REAL, reason TEXT, idempotency_key TEXT UNIQUE);"
        "INSERT OR IGNORE INTO customers VALUES ('CU-1', 'Ada Lovelace', 'gold'), "
        "('CU-2', 'Alan Turing', 'silver');")
    return conn


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def get_customer(customer_id: Annotated[str, Field(pattern=r"^CU-\d+$")]) -> dict[str, Any]:
    """Look a customer up by id (e.g. CU-1)."""
    with _db() as conn:
        row = conn.execute("SELECT * FROM customers WHERE id = ?", (customer_id,)).fetchone()
    if row is None:
        raise ToolError(f"no customer {customer_id}")
    return dict(row)


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def find_credit(idempotency_key: str) -> dict[str, Any]:
    """The credit written under an idempotency key, or found: false."""
    with _db() as conn:
        row = conn.execute("SELECT * FROM credits WHERE idempotency_key = ?",
                           (idempotency_key,)).fetchone()
    return {"found": True, **dict(row)} if row else {"found": False}


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                         idempotent_hint=True))
def add_credit(customer_id: Annotated[str, Field(pattern=r"^CU-\d+$")],
               amount_usd: Annotated[float, Field(gt=0, le=5000)], reason: str,
               ctx: Context) -> dict[str, Any]:
    """Give a customer a credit in USD."""
    meta = ctx.request_context.meta or {}
    key = str(meta.get(KEY_META) or uuid.uuid4().hex)
    with _db() as conn:
        found = conn.execute("SELECT * FROM credits WHERE idempotency_key = ?", (key,)).fetchone()
        if found is not None:
            return {**dict(found), "replayed": True}
        credit_id = f"CR-{uuid.uuid4().hex[:8]}"
        conn.execute("INSERT INTO credits VALUES (?, ?, ?, ?, ?)",
                     (credit_id, customer_id, amount_usd, reason, key))
    hang = os.environ.get("CRM_HANG_FILE")
    if hang and Path(hang).exists():
        Path(hang).unlink()
        time.sleep(600)
    return {"id": credit_id, "customer_id": customer_id, "amount_usd": amount_usd,
            "idempotency_key": key}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def big_report() -> str:
    """A very long report."""
    return "x" * 200_000


def main() -> None:
    if pid := os.environ.get("CRM_PID_FILE"):
        Path(pid).write_text(str(os.getpid()))
    _db().close()
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
