"""Fixtures shared by the app tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.storage.db import PostgresDatabase, SqliteDatabase
from app.storage.store import Store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The app store on each backend: a SQLite file, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        s = Store(SqliteDatabase(tmp_path / "app.storage.db"))
    else:
        s = Store(PostgresDatabase(request.getfixturevalue("pg_url")))
    yield s
    s.close()
