"""Ingest: add, no-op on unchanged files, replace on changed ones, skip bad files by name."""

from __future__ import annotations

from pathlib import Path

from app.knowledge.ingest import ensure_bundled, ingest_path
from app.knowledge.store import KnowledgeStore
from tests.fakes import pdf_bytes


def _docs(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    root.mkdir()
    (root / "refunds.md").write_text("# Refunds\n\nRefunds reach the card in 5 business days.\n")
    (root / "lost.pdf").write_bytes(pdf_bytes(["Lost parcels are reshipped or refunded."]))
    return root


def _rows(store: KnowledgeStore, source: str) -> list[dict[str, object]]:
    got = store.collection("policies").get(where={"source": source}, include=["metadatas"])
    return [dict(m) for m in got["metadatas"] or []]


def test_ingest_path_stores_chunks_with_metadata(store: KnowledgeStore, tmp_path: Path) -> None:
    report = ingest_path(store, _docs(tmp_path), collection="policies", tenant="acme")

    assert sorted(report.added) == ["policies/lost.pdf", "policies/refunds.md"]
    assert report.chunks == 2 and not report.failed
    [meta] = _rows(store, "policies/refunds.md")
    assert meta["tenant"] == "acme"
    assert meta["title"] == "Refunds"
    assert (meta["line_start"], meta["line_end"]) == (1, 3)
    assert len(str(meta["checksum"])) == 64
    assert str(meta["ingested_at"]).endswith("+00:00")


def test_ingest_path_unchanged_file_is_a_no_op(store: KnowledgeStore, tmp_path: Path) -> None:
    root = _docs(tmp_path)
    ingest_path(store, root, collection="policies", tenant="acme")
    before = _rows(store, "policies/refunds.md")

    again = ingest_path(store, root, collection="policies", tenant="acme")

    assert sorted(again.unchanged) == ["policies/lost.pdf", "policies/refunds.md"]
    assert again.chunks == 0 and not again.added and not again.replaced
    assert _rows(store, "policies/refunds.md") == before  # same ingested_at: not rewritten


def test_ingest_path_changed_file_replaces_its_chunks(store: KnowledgeStore,
                                                      tmp_path: Path) -> None:
    root = _docs(tmp_path)
    ingest_path(store, root, collection="policies", tenant="acme")
    long_text = "# Refunds\n\n" + "\n\n".join(f"Rule {i}: " + "refund " * 40 for i in range(6))
    (root / "refunds.md").write_text(long_text)

    report = ingest_path(store, root, collection="policies", tenant="acme")

    assert report.replaced == ["policies/refunds.md"]
    assert report.unchanged == ["policies/lost.pdf"]
    rows = _rows(store, "policies/refunds.md")
    assert len(rows) == report.chunks > 1
    texts = store.collection("policies").get(where={"source": "policies/refunds.md"})
    assert not any("5 business days" in t for t in texts["documents"] or [])


def test_ingest_path_bad_file_is_reported_and_others_kept(store: KnowledgeStore,
                                                         tmp_path: Path) -> None:
    root = _docs(tmp_path)
    (root / "corrupt.pdf").write_bytes(b"%PDF-1.7 truncated")
    (root / "photo.jpg").write_bytes(b"\xff\xd8")
    seen: list[tuple[str, str]] = []

    report = ingest_path(store, root, collection="policies", tenant="acme",
                         progress=lambda p, outcome: seen.append((p.name, outcome)))

    assert set(report.failed) == {"policies/corrupt.pdf", "policies/photo.jpg"}
    assert "unreadable PDF" in report.failed["policies/corrupt.pdf"]
    assert sorted(report.added) == ["policies/lost.pdf", "policies/refunds.md"]
    assert ("corrupt.pdf", "failed") in seen and ("refunds.md", "added") in seen


def test_ensure_bundled_ingests_once_on_first_start(store: KnowledgeStore) -> None:
    first = ensure_bundled(store)

    assert first is not None and first.chunks > 20 and not first.failed
    assert store.collections() == ["incident", "support"]
    assert ensure_bundled(store) is None
    assert ensure_bundled(store, tenant="other") is not None  # each tenant gets its own copy
