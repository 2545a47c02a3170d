"""Search: citations and scores, tenant isolation, embedder consistency."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.knowledge.ingest import ingest_path
from app.knowledge.store import KnowledgeError, KnowledgeStore


def _write(root: Path, name: str, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)
    return root


def test_search_returns_passages_with_citations(store: KnowledgeStore, tmp_path: Path) -> None:
    root = _write(tmp_path / "kb", "refunds.md",
                  "# Refunds\n\nIntro.\n\nRefunds reach the card within 5 business days.\n")
    _write(root, "shipping.md", "# Shipping\n\nExpress shipping takes 1 to 2 days.\n")
    ingest_path(store, root, collection="support", tenant="acme")

    [best, *_] = store.search("refunds card business days", tenant="acme")

    assert best.source == "kb/refunds.md"
    assert best.citation == "kb/refunds.md:L1-L5"
    assert best.title == "Refunds"
    assert 0 < best.score <= 1


def test_search_never_returns_another_tenants_chunks(store: KnowledgeStore,
                                                     tmp_path: Path) -> None:
    ingest_path(store, _write(tmp_path / "a", "secret.md", "Acme refund limit is 900 USD."),
                collection="support", tenant="acme")
    ingest_path(store, _write(tmp_path / "b", "secret.md", "Globex refund limit is 50 USD."),
                collection="support", tenant="globex")

    for tenant, own in (("acme", "Acme"), ("globex", "Globex")):
        for collection in ("support", None):
            found = store.search("refund limit Acme Globex", tenant=tenant,
                                 collection=collection, k=10)
            assert found and all(own in p.text for p in found)
    assert store.search("refund limit", tenant="initech") == []
    assert store.count("acme") == store.count("globex") == 1


def test_search_unknown_collection_finds_nothing(store: KnowledgeStore) -> None:
    assert store.search("anything", tenant="acme", collection="nope") == []


def test_collection_refuses_a_different_embedder(store: KnowledgeStore) -> None:
    store.collection("support")

    class Other:
        name = "other-model"

    other = KnowledgeStore(store.client, Other())  # type: ignore[arg-type]
    with pytest.raises(KnowledgeError, match="embedded with test-hashing-256"):
        other.collection("support")


def test_collection_rejects_bad_names(store: KnowledgeStore) -> None:
    with pytest.raises(KnowledgeError, match="bad collection name"):
        store.collection("../etc")
