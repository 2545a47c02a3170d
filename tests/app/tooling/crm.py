"""Start the test CRM MCP server (crm_server.py) as a real process on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVER = Path(__file__).with_name("crm_server.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Crm:
    """A CRM server over streamable HTTP; ``stop``/``start`` again on the same port and db."""

    db: Path
    port: int = 0
    hang_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def env(self) -> dict[str, str]:
        env = {**os.environ, "CRM_DB": str(self.db)}
        if self.hang_file is not None:
            env["CRM_HANG_FILE"] = str(self.hang_file)
        return env

    def start(self) -> Crm:
        self.port = self.port or free_port()
        with open(self.db.with_suffix(".log"), "ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(SERVER), "http", str(self.port)],
                                         env=self.env(), stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.db.with_suffix(".log").read_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("CRM server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def credits(self, where: str = "1 = 1") -> list[tuple[str, float, str]]:
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute("SELECT customer_id, amount_usd, idempotency_key FROM credits "
                                f"WHERE {where}").fetchall()
        finally:
            conn.close()


async def until(check: Any, what: str, within_s: float = 60) -> None:
    """Poll ``check()`` until it is true; fail naming ``what`` after ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
