"""The ``demo`` pack: support and incident tools over the bundled sandbox.

Settings: ``db_url`` (a PostgreSQL URL) or ``db_path`` (a SQLite file, relative paths
against the project folder). With neither, the sandbox's tables live in Foreman's own
PostgreSQL database when one is configured (so every worker acts on one world), else in
``<data_dir>/sandbox.db``. The tables are created and seeded on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools import sandbox, sandbox_pg
from tools.incident import INCIDENT_TOOLS
from tools.pack import PackEnv, ToolPack
from tools.spec import ToolContext
from tools.support import SUPPORT_TOOLS


def _setup(env: PackEnv) -> Mapping[str, Any]:
    url = env.settings.get("db_url")
    raw = env.settings.get("db_path")
    if url and raw:
        raise ValueError("give db_url or db_path, not both")
    if url or (not raw and env.database_url):
        target = str(url or env.database_url)
        if not sandbox_pg.is_url(target):
            raise ValueError("db_url must be a postgresql:// URL")
        sandbox.ensure(target)
        return {**env.settings, "db_url": target}
    path = Path(str(raw)) if raw else env.data_dir / "sandbox.db"
    if not path.is_absolute() and raw:
        path = env.project_dir / path
    sandbox.ensure(path)
    return {**env.settings, "db_path": str(path)}


PACK = ToolPack("demo", SUPPORT_TOOLS + INCIDENT_TOOLS, setup=_setup,
                description="Support and incident tools over the bundled SQLite sandbox.")


def context(db: str | Path, key: str, **fields: Any) -> ToolContext:
    """A context for calling demo tools directly (tests, eval replays); ``db`` is a SQLite
    path or a PostgreSQL URL."""
    setting = "db_url" if sandbox_pg.is_url(db) else "db_path"
    return ToolContext(idempotency_key=key, settings={setting: str(db)}, **fields)
