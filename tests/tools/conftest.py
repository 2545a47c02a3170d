"""Fixtures of the tool tests: the demo sandbox on each backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.sandbox import reset


@pytest.fixture(params=["sqlite", "postgres"])
def sandbox_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly seeded sandbox: a SQLite file, then a fresh PostgreSQL schema."""
    target = (str(tmp_path / "sandbox.db") if request.param == "sqlite"
              else str(request.getfixturevalue("pg_url")))
    reset(target)
    return target
