"""Ingesting files into a knowledge base: unchanged files are skipped, changed ones replaced,
unreadable ones reported by name while the rest carry on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.knowledge import BUNDLED_DOCS
from app.knowledge.documents import SUPPORTED, DocumentError, chunk_text, read_document
from app.knowledge.store import KnowledgeStore

log = logging.getLogger(__name__)

Progress = Callable[[Path, str], None]
"""Called after each file with its outcome: added, replaced, unchanged or failed."""


@dataclass
class IngestReport:
    """What an ingest did, file by file."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    chunks: int = 0
    seconds: float = 0.0

    @property
    def chunks_per_s(self) -> float:
        """Ingest throughput over the files that were (re)embedded."""
        return self.chunks / self.seconds if self.seconds > 0 else 0.0


def discover(path: Path) -> list[Path]:
    """The files an ingest of ``path`` covers: the file itself, or every file below a folder
    (unsupported ones included, so they are reported rather than silently ignored)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def ingest_path(store: KnowledgeStore, path: Path, *, collection: str, tenant: str,
                chunk_chars: int = 500, overlap_chars: int = 100,
                progress: Progress | None = None) -> IngestReport:
    """Ingest a file or folder into ``collection`` for ``tenant``.

    A document's ``source`` is its path relative to ``path``'s parent folder, so ingesting
    ``docs/support`` names files ``support/refund-policy.md``.
    """
    import time

    root = path.resolve().parent
    report = IngestReport()
    started = time.perf_counter()
    for file in discover(path):
        source = file.resolve().relative_to(root).as_posix()
        outcome = _ingest_file(store, file, source, collection, tenant, chunk_chars,
                               overlap_chars, report)
        if progress:
            progress(file, outcome)
    report.seconds = time.perf_counter() - started
    return report


def _ingest_file(store: KnowledgeStore, file: Path, source: str, collection: str, tenant: str,
                 chunk_chars: int, overlap_chars: int, report: IngestReport) -> str:
    if file.suffix.lower() not in SUPPORTED:
        report.failed[source] = f"unsupported file type {file.suffix or '(none)'}"
        return "failed"
    try:
        doc = read_document(file)
    except (DocumentError, OSError) as e:
        report.failed[source] = str(e)
        log.debug("skipped unreadable document", extra={"source": source, "reason": str(e)})
        return "failed"
    previous = store.stored_checksum(collection, tenant, source)
    if previous == doc.checksum:
        report.unchanged.append(source)
        return "unchanged"
    chunks = chunk_text(doc.text, chunk_chars, overlap_chars)
    store.replace(collection, tenant, source, doc, chunks,
                  ingested_at=datetime.now(UTC).isoformat(timespec="seconds"))
    report.chunks += len(chunks)
    (report.added if previous is None else report.replaced).append(source)
    return "added" if previous is None else "replaced"


def bundled_collections() -> list[str]:
    """The knowledge bases shipped with Foreman (one per bundled team)."""
    return sorted(p.name for p in BUNDLED_DOCS.iterdir() if p.is_dir())


def ingest_bundled(store: KnowledgeStore, tenant: str = "default", chunk_chars: int = 500,
                   overlap_chars: int = 100) -> IngestReport:
    """Ingest every bundled knowledge base; files already stored unchanged are skipped."""
    total = IngestReport()
    for name in bundled_collections():
        r = ingest_path(store, BUNDLED_DOCS / name, collection=name, tenant=tenant,
                        chunk_chars=chunk_chars, overlap_chars=overlap_chars)
        total.added += r.added
        total.replaced += r.replaced
        total.unchanged += r.unchanged
        total.failed.update(r.failed)
        total.chunks += r.chunks
        total.seconds += r.seconds
    return total


def ensure_bundled(store: KnowledgeStore, tenant: str = "default", chunk_chars: int = 500,
                   overlap_chars: int = 100) -> IngestReport | None:
    """First start: ingest the bundled knowledge bases when the tenant has none yet."""
    if store.count(tenant) > 0:
        return None
    report = ingest_bundled(store, tenant, chunk_chars, overlap_chars)
    log.info("ingested bundled knowledge", extra={"chunks": report.chunks,
                                                  "files": len(report.added)})
    return report
