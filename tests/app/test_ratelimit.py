"""The run-start rate limit lives in the database: two limiters (two API replicas) share it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import RateLimited
from app.governance.ratelimit import RateLimiter
from app.storage.db import Database, PostgresDatabase, SqliteDatabase


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    d: Database = (SqliteDatabase(tmp_path / "app.storage.db") if request.param == "sqlite"
                   else PostgresDatabase(request.getfixturevalue("pg_url")))
    yield d
    d.close()


def test_ratelimit_two_replicas_share_one_bucket_per_tenant(db: Database) -> None:
    now = [1000.0]
    a = RateLimiter(4, db, clock=lambda: now[0])
    b = RateLimiter(4, db, clock=lambda: now[0])
    for limiter in (a, b, a, b):
        limiter.take("acme")
    with pytest.raises(RateLimited) as hit:
        b.take("acme")
    assert 0 < hit.value.retry_after_s <= 15
    a.take("globex")  # another tenant has its own bucket
    now[0] += 15  # one token back at 4 per minute
    a.take("acme")
    with pytest.raises(RateLimited):
        b.take("acme")
