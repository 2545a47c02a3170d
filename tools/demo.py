"""The ``demo`` pack: support and incident tools over the bundled SQLite sandbox.

Its one setting is ``db_path`` (default ``<data_dir>/sandbox.db``, relative paths against
the project folder); the database is created and seeded on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools import sandbox
from tools.incident import INCIDENT_TOOLS
from tools.pack import PackEnv, ToolPack
from tools.spec import ToolContext
from tools.support import SUPPORT_TOOLS


def _setup(env: PackEnv) -> Mapping[str, Any]:
    raw = env.settings.get("db_path")
    path = Path(str(raw)) if raw else env.data_dir / "sandbox.db"
    if not path.is_absolute() and raw:
        path = env.project_dir / path
    sandbox.ensure(path)
    return {**env.settings, "db_path": str(path)}


PACK = ToolPack("demo", SUPPORT_TOOLS + INCIDENT_TOOLS, setup=_setup,
                description="Support and incident tools over the bundled SQLite sandbox.")


def context(db: str | Path, key: str, **fields: Any) -> ToolContext:
    """A context for calling demo tools directly (tests, eval replays)."""
    return ToolContext(idempotency_key=key, settings={"db_path": str(db)}, **fields)
