"""Shared fixtures: offline settings on a temp data dir, composed services, sandbox access."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from app.config.settings import Settings, load_settings
from app.governance.policy.rules import PolicyConfig
from app.knowledge.embed import E5Embedder
from app.services import Services, open_services
from tests.fake_provider.process import FakeProvider, fake_provider
from tests.fakes import HashingEmbedder, MemoEmbedder
from tools import sandbox

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

# No test may reach a real provider: drop keys and force litellm's offline price map.
for _key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
    os.environ.pop(_key, None)
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["DISABLE_AIOHTTP_TRANSPORT"] = "True"


def make_settings(data_dir: Path, *, with_policy: bool = False, **overrides: Any) -> Settings:
    """The bundled foreman.yaml, offline, on ``data_dir``, with overrides applied.

    Without ``with_policy`` the approval rules are dropped, for tests of the loop itself.
    """
    base = load_settings(ROOT / "foreman.yaml")
    if not with_policy:
        overrides.setdefault("policy", PolicyConfig())
    return base.model_copy(update={"data_dir": data_dir, "offline": True, **overrides})


@pytest.fixture(autouse=True)
def hashing_embedder_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process services embed with the test hashing embedder unless a test passes one:
    loading the real model and ingesting the bundled knowledge per test would be slow."""
    monkeypatch.setattr("app.services.make_embedder", lambda config: HashingEmbedder())


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeProvider]:
    """The fake OpenAI-compatible provider process (tests/fake_provider), one per session;
    a test resets it (``control(reset=True)``) before queueing replies."""
    with fake_provider() as server:
        yield server


@pytest.fixture(scope="session")
def real_embedder() -> MemoEmbedder:
    """The bundled offline embedder, shared by the session and memoised."""
    return MemoEmbedder(E5Embedder())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Offline settings on a fresh data dir, with no approval rules."""
    return make_settings(tmp_path / "data")


@pytest.fixture
def policy_settings(tmp_path: Path) -> Settings:
    """Offline settings with the bundled approval policy."""
    return make_settings(tmp_path / "data", with_policy=True)


def config_without_policy(tmp_path: Path) -> Path:
    """A copy of foreman.yaml without approval rules, for subprocess tests of the loop."""
    data = yaml.safe_load((ROOT / "foreman.yaml").read_text())
    data.pop("policy", None)
    path = tmp_path / "foreman-nopolicy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    """Composed services with the default scripted provider and a hashing embedder, so the
    first-start ingest of the bundled knowledge takes milliseconds."""
    async with open_services(settings, embedder=HashingEmbedder()) as s:
        yield s


@pytest.fixture
def sandbox_rows(settings: Settings) -> Iterator[Any]:
    """``rows(sql, *params)`` → list of dicts from the run's sandbox database."""

    def rows(sql: str, *params: Any) -> list[dict[str, Any]]:
        # The demo pack keeps its tables in Foreman's database when it has one.
        conn = sandbox.connect(settings.database_url or settings.data_dir / "sandbox.db")
        try:
            return [dict(r) for r in conn.execute(sql, params)]
        finally:
            conn.close()

    yield rows


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in the machine's PostgreSQL (fails loudly when it is not there)."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL at {PG_URL} is required for these tests: {e}")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()
