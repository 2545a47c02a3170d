"""A knowledge store on a temp Chroma directory with the hashing embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config.settings import KnowledgeConfig
from app.knowledge.store import KnowledgeStore, open_chroma
from tests.fakes import HashingEmbedder


@pytest.fixture
def store(tmp_path: Path) -> KnowledgeStore:
    """An empty store (embedded Chroma under ``tmp_path``)."""
    return KnowledgeStore(open_chroma(KnowledgeConfig(), tmp_path), HashingEmbedder())
