"""An example MCP server (the official `mcp` SDK): customers and notes in a SQLite file.

Foreman starts it over stdio (see foreman.yaml). Replace it with your own systems.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

server = MCPServer("helpdesk", log_level="WARNING")
KEY_META = "foreman/idempotency_key"  # Foreman sends every write's idempotency key here


def _db() -> sqlite3.Connection:
    path = os.environ.get("HELPDESK_DB", "helpdesk.db")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    conn = sqlite3.connect(path, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.executescript(
        "CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, name TEXT);"
        "CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY, customer_id TEXT, text TEXT,"
        " idempotency_key TEXT UNIQUE);"
        "INSERT OR IGNORE INTO customers VALUES ('CU-1', 'Ada Lovelace'), ('CU-2', 'Alan Turing');")
    return conn


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def get_customer(customer_id: str) -> dict[str, Any]:
    """Look a customer up by id, e.g. CU-1."""
    with _db() as conn:
        row = conn.execute("SELECT * FROM customers WHERE id = ?", (customer_id,)).fetchone()
    if row is None:
        raise ToolError(f"no customer {customer_id}")
    return dict(row)


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def add_note(customer_id: str, text: str, ctx: Context) -> dict[str, Any]:
    """Add a note to a customer's record."""
    key = str((ctx.request_context.meta or {}).get(KEY_META) or uuid.uuid4().hex)
    with _db() as conn:
        found = conn.execute("SELECT * FROM notes WHERE idempotency_key = ?", (key,)).fetchone()
        if found is not None:  # the same call again: answer it, write nothing
            return dict(found)
        note_id = f"N-{uuid.uuid4().hex[:8]}"
        conn.execute("INSERT INTO notes VALUES (?, ?, ?, ?)", (note_id, customer_id, text, key))
    return {"id": note_id, "customer_id": customer_id, "text": text}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def find_note(idempotency_key: str) -> dict[str, Any]:
    """The note written under an idempotency key (Foreman reconciles with it after a crash)."""
    with _db() as conn:
        row = conn.execute("SELECT * FROM notes WHERE idempotency_key = ?",
                           (idempotency_key,)).fetchone()
    return {"found": True, **dict(row)} if row else {"found": False}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def list_notes(customer_id: str) -> dict[str, Any]:
    """Every note on a customer's record, oldest first."""
    with _db() as conn:
        rows = conn.execute("SELECT id, text FROM notes WHERE customer_id = ? ORDER BY rowid",
                            (customer_id,)).fetchall()
    return {"customer_id": customer_id, "notes": [dict(r) for r in rows]}


if __name__ == "__main__":
    server.run("stdio")
